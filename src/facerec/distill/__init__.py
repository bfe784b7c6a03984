"""Knowledge distillation from a teacher's embeddings (the dlib reference model or any facerec
model) into a student trained with the same loop."""

from facerec.distill.losses import (
    DistillationLoss,
    embedding_cosine,
    embedding_l2,
    evaluation_relation,
    logit_kd,
    rkd_angle,
    rkd_distance,
    similarity_matrix,
)

__all__ = [
    "DistillationLoss",
    "embedding_cosine",
    "embedding_l2",
    "evaluation_relation",
    "logit_kd",
    "rkd_angle",
    "rkd_distance",
    "similarity_matrix",
]
