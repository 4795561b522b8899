"""Evaluation identical in numbers to the official DCASE2024 Task 2 evaluator (SPEC 6)."""

from stethoscope.evaluation.evaluator import (
    EvaluationResult,
    GroundTruthSection,
    evaluate_scores_dir,
    evaluate_sections,
    load_ground_truth,
)
from stethoscope.evaluation.metrics import (
    EvaluationError,
    SectionMetrics,
    evaluate_section,
    floored_hmean,
    official_score,
    official_score_ci95,
)
from stethoscope.evaluation.submission import (
    decision_file_name,
    read_submission_dir,
    score_file_name,
    write_submission,
)

__all__ = [
    "EvaluationError",
    "EvaluationResult",
    "GroundTruthSection",
    "SectionMetrics",
    "decision_file_name",
    "evaluate_scores_dir",
    "evaluate_section",
    "evaluate_sections",
    "floored_hmean",
    "load_ground_truth",
    "official_score",
    "official_score_ci95",
    "read_submission_dir",
    "score_file_name",
    "write_submission",
]
