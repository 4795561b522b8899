"""The systems of the report's Table 1, the official baselines, the k-means reference and ablations."""

from __future__ import annotations

from stethoscope.systems.config import ComponentSpec as C
from stethoscope.systems.config import SystemConfig, register_system

AE = C("ae", {"epochs": 100, "batch_size": 256, "lr": 1e-3, "val_split": 0.1})
CNN = C("dualcnn", {"epochs": 10, "batch_size": 64, "lr": 1e-3})
ACAE = C("acae", {"epochs": 20, "batch_size": 32, "lr": 1e-3})
P90 = C("percentile", {"q": 90.0})

TABLE1 = ["ae-mse", "ae-mahala", "cnn-kmeans", "cnn-ds", "cnn-dtmm", "acae"]

for cfg in [
    SystemConfig("spectral", C("spectral"), C("zscore"), P90, "embedding",
                 "z-scored distance of the mean log-mel spectrum to the training mean (reference)"),
    SystemConfig("ae-mse", AE, C("ae-mse"), C("gamma", {"percentile": 90.0}), "residual",
                 "official DCASE2025 baseline, reconstruction MSE"),
    SystemConfig("ae-mahala", AE, C("ae-mahala"), C("gamma", {"percentile": 90.0}), "residual",
                 "official DCASE2025 baseline, Mahalanobis distance of the residual"),
    SystemConfig("cnn-kmeans", CNN, C("kmeans", {"n_clusters": 16}), P90, "embedding",
                 "dual-branch CNN + k-means (Wilkinghoff; the back end the report replaces)"),
    SystemConfig("cnn-ds", CNN, C("density-softmax"), P90, "embedding",
                 "dual-branch CNN + DensitySoftmax (report system 1)"),
    SystemConfig("cnn-dtmm", CNN, C("dtmm"), C("mu-k-sigma", {"k": 3.0}), "views",
                 "dual-branch CNN + DtMM mixture evolution, T = mu + k sigma (report system 2)"),
    SystemConfig("cnn-kmeans-dn", CNN, C("kmeans", {"n_clusters": 16, "domain_norm": "median"}), P90,
                 "embedding", "CNN k-means with per-domain distance scaling (beyond the report)"),
    SystemConfig("cnn-ds-density", CNN, C("density-softmax", {"variant": "neg-logsumexp"}), P90,
                 "embedding", "CNN-DS variant: pure density score -logsumexp_i l_i(x)"),
    SystemConfig("cnn-dtmm-residual", CNN, C("dtmm", {"residual": True}), C("mu-k-sigma", {"k": 3.0}),
                 "views", "CNN-DtMM variant: PCA reconstruction error as an extra dimension"),
    SystemConfig("acae", ACAE, C("cosine-centre"), C("mcv", {"coverage": 1.0}), "embedding",
                 "attention-conv autoencoder + noisy-ArcMix, cosine score, MCV threshold (system 3)"),
    SystemConfig("acae-noattn", C("acae", {**ACAE.params, "attention": False}), C("cosine-centre"),
                 C("mcv", {"coverage": 1.0}), "embedding", "ACAE ablation: no attention"),
    SystemConfig("acae-mseonly", C("acae", {**ACAE.params, "arcmix": False}), C("cosine-centre"),
                 C("mcv", {"coverage": 1.0}), "embedding", "ACAE ablation: MSE loss only"),
    SystemConfig("acae-classcentre", ACAE, C("cosine-centre", {"per": "class"}), C("mcv", {"coverage": 1.0}),
                 "embedding", "ACAE with one cosine centre per attribute class (beyond the report)"),
    SystemConfig("acae-recon", ACAE, C("identity"), C("mcv", {"coverage": 1.0}), "recon-error",
                 "ACAE ablation: reconstruction error as the score"),
]:
    register_system(cfg)
