"""The built-in systems: the report's Table 1, the official baselines, the k-means reference,
measured variants and ablations. Their order here is the order they are listed and reported in."""

from __future__ import annotations

from stethoscope.systems.config import (
    ComponentSpec,
    SystemConfig,
    fusion_system,
    register_system,
)

AE = ComponentSpec("ae", {"epochs": 100, "batch_size": 256, "lr": 1e-3, "val_split": 0.1})
AE_2CH = ComponentSpec("ae", {**AE.params, "two_channel": True})
AE_NOISEREF = ComponentSpec("ae", {**AE.params, "two_channel": True, "noise_reference": True})
AE_ANC = ComponentSpec("ae", {**AE.params, "noise_cancel": True})
CNN = ComponentSpec("dualcnn", {"epochs": 10, "batch_size": 64, "lr": 1e-3})
ACAE = ComponentSpec("acae", {"epochs": 20, "batch_size": 32, "lr": 1e-3})
P90 = ComponentSpec("percentile", {"q": 90.0})
GAMMA90 = ComponentSpec("gamma", {"percentile": 90.0})
MCV = ComponentSpec("mcv", {"coverage": 1.0})
MU_3_SIGMA = ComponentSpec("mu-k-sigma", {"k": 3.0})

#: the six systems of the report's Table 1 (what ``--systems all`` runs)
TABLE1 = ("ae-mse", "ae-mahala", "cnn-kmeans", "cnn-ds", "cnn-dtmm", "acae")

BUILTIN = [
    SystemConfig(
        name="spectral",
        frontend=ComponentSpec("spectral"),
        backend=ComponentSpec("zscore"),
        threshold=P90,
        backend_input="embedding",
        description="z-scored distance of the mean log-mel spectrum to the training mean "
        "(reference)",
    ),
    SystemConfig(
        name="ae-mse",
        frontend=AE,
        backend=ComponentSpec("ae-mse"),
        threshold=GAMMA90,
        backend_input="residual",
        description="official DCASE2025 baseline, reconstruction MSE",
    ),
    SystemConfig(
        name="ae-mahala",
        frontend=AE,
        backend=ComponentSpec("ae-mahala"),
        threshold=GAMMA90,
        backend_input="residual",
        description="official DCASE2025 baseline, Mahalanobis distance of the residual",
    ),
    SystemConfig(
        name="cnn-kmeans",
        frontend=CNN,
        backend=ComponentSpec("kmeans", {"n_clusters": 16}),
        threshold=P90,
        backend_input="embedding",
        description="dual-branch CNN + k-means (Wilkinghoff; the back end the report replaces)",
    ),
    SystemConfig(
        name="cnn-ds",
        frontend=CNN,
        # the report's reading (softmax over the class log-densities), scored by the density
        # term -logsumexp_i l_i(x): its 1 - max softmax saturates (see cnn-ds-msp)
        backend=ComponentSpec("density-softmax", {"score": "neg-logsumexp"}),
        threshold=P90,
        backend_input="embedding",
        description="dual-branch CNN + DensitySoftmax (report system 1)",
    ),
    SystemConfig(
        name="cnn-dtmm",
        frontend=CNN,
        backend=ComponentSpec("dtmm"),
        threshold=MU_3_SIGMA,
        backend_input="views",
        description="dual-branch CNN + DtMM mixture evolution, T = mu + k sigma (report system 2)",
    ),
    SystemConfig(
        name="acae",
        frontend=ACAE,
        backend=ComponentSpec("cosine-centre"),
        threshold=MCV,
        backend_input="embedding",
        description="attention-conv autoencoder + noisy-ArcMix, cosine score, MCV threshold "
        "(report system 3)",
    ),
    SystemConfig(
        name="cnn-ds-head",
        frontend=CNN,
        backend=ComponentSpec("density-softmax", {"reading": "head"}),
        threshold=P90,
        backend_input="embedding-logits",
        description="CNN-DS, Bui & Liu's reading: the trained head's logits scaled by the density",
    ),
    SystemConfig(
        name="cnn-ds-refit",
        frontend=CNN,
        backend=ComponentSpec("density-softmax", {"reading": "refit"}),
        threshold=P90,
        backend_input="embedding",
        description="CNN-DS with a classifier refitted per section (cosine to class means)",
    ),
    SystemConfig(
        name="cnn-ds-msp",
        frontend=CNN,
        backend=ComponentSpec("density-softmax", {"score": "msp"}),
        threshold=P90,
        backend_input="embedding",
        description="CNN-DS scored 1 - max softmax over the class log-densities (the report's "
        "words taken literally; saturates at 1 for most clips in embedding space)",
    ),
    SystemConfig(
        name="cnn-kmeans-dn",
        frontend=CNN,
        backend=ComponentSpec("kmeans", {"n_clusters": 16, "domain_norm": "median"}),
        threshold=P90,
        backend_input="embedding",
        description="CNN k-means, each domain's distance scaled by its held-out median "
        "(beyond the report)",
    ),
    SystemConfig(
        name="cnn-knn-ldn",
        frontend=CNN,
        backend=ComponentSpec("knn-ldn"),
        threshold=P90,
        backend_input="embedding",
        description="CNN + kNN distance with local density normalisation (beyond the report)",
    ),
    SystemConfig(
        name="cnn-knn-ldn-memmixup",
        frontend=CNN,
        backend=ComponentSpec("knn-ldn", {"target_augment": "memmixup"}),
        threshold=P90,
        backend_input="embedding",
        description="CNN + kNN-LDN, target bank augmented by MemMixup (beyond the report)",
    ),
    SystemConfig(
        name="cnn-knn-ldn-smote",
        frontend=CNN,
        backend=ComponentSpec("knn-ldn", {"target_augment": "smote"}),
        threshold=P90,
        backend_input="embedding",
        description="CNN + kNN-LDN, target bank augmented by SMOTE (beyond the report)",
    ),
    SystemConfig(
        name="cnn-dtmm-residual",
        frontend=CNN,
        backend=ComponentSpec("dtmm", {"residual": True}),
        threshold=MU_3_SIGMA,
        backend_input="views",
        description="CNN-DtMM variant: PCA reconstruction error as an extra dimension",
    ),
    SystemConfig(
        name="acae-noattn",
        frontend=ComponentSpec("acae", {**ACAE.params, "attention": False}),
        backend=ComponentSpec("cosine-centre"),
        threshold=MCV,
        backend_input="embedding",
        description="ACAE ablation: no attention",
    ),
    SystemConfig(
        name="acae-mseonly",
        frontend=ComponentSpec("acae", {**ACAE.params, "arcmix": False}),
        backend=ComponentSpec("cosine-centre"),
        threshold=MCV,
        backend_input="embedding",
        description="ACAE ablation: MSE loss only",
    ),
    SystemConfig(
        name="acae-classcentre",
        frontend=ACAE,
        backend=ComponentSpec("cosine-centre", {"per": "class"}),
        threshold=MCV,
        backend_input="embedding",
        description="ACAE with one cosine centre per attribute class (beyond the report)",
    ),
    SystemConfig(
        name="acae-knn-ldn",
        frontend=ACAE,
        backend=ComponentSpec("knn-ldn"),
        threshold=P90,
        backend_input="embedding",
        description="ACAE + kNN distance with local density normalisation (beyond the report)",
    ),
    SystemConfig(
        name="acae-recon",
        frontend=ACAE,
        backend=ComponentSpec("identity"),
        threshold=MCV,
        backend_input="recon-error",
        description="ACAE ablation: reconstruction error as the score",
    ),
]

#: noise-aware systems for two-channel (near/far) recordings, DCASE2026
NOISE_AWARE = [
    SystemConfig(
        name=f"{name}-{kind}",
        frontend=spec,
        backend=ComponentSpec(name),
        threshold=GAMMA90,
        backend_input="residual",
        description=f"{name.upper()} {what} (DCASE2026 two-channel data; beyond the report)",
    )
    for kind, spec, what in (
        ("noiseref", AE_NOISEREF, "on the near channel, the far one's noise subtracted by a "
         "gain per band learned on normal clips"),
        ("2ch", AE_2CH, "on the log-mel frames of both channels side by side"),
        ("anc", AE_ANC, "on the near channel with the far one cancelled from it by a per-clip "
         "Wiener filter"),
    )
    for name in ("ae-mse", "ae-mahala")
]  # fmt: skip

for _cfg in BUILTIN + NOISE_AWARE:
    register_system(_cfg)

FUSIONS = [
    fusion_system(
        "fusion-aemahala-cnnknn",
        ("ae-mahala", "cnn-knn-ldn"),
        P90,
        "score-level fusion: AE-MAHALA and CNN kNN-LDN, each standardised on its training scores "
        "(beyond the report)",
    ),
    fusion_system(
        "fusion-aemahala-cnnkmeansdn",
        ("ae-mahala", "cnn-kmeans-dn"),
        P90,
        "score-level fusion: AE-MAHALA and CNN k-means with domain scaling (beyond the report)",
    ),
    fusion_system(
        "fusion-aemahala-cnnknn-cnnkmeansdn",
        ("ae-mahala", "cnn-knn-ldn", "cnn-kmeans-dn"),
        P90,
        "score-level fusion: AE-MAHALA, CNN kNN-LDN and CNN k-means with domain scaling, equal "
        "weights (beyond the report)",
    ),
]
for _cfg in FUSIONS:
    register_system(_cfg)
