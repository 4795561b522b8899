from stethoscope.decision import gamma, mcv, mu_k_sigma, percentile  # noqa: F401  (register)
