"""ScienceQA as an `evaluate` metric: LLaVA's letter parsing, accuracy overall and on questions with an image."""

import datasets
import evaluate

from hub_llava.eval.metrics.choice import scienceqa_correct

_DESCRIPTION = "ScienceQA accuracy with LLaVA-1.5's parsing (exact letter, 'X. ...', one 'The answer is X.')."
_KWARGS = """
Args:
    predictions (`list[str]`): raw model answers.
    references (`list[int]`): answer indices (0 = A).
    num_choices (`list[int]`): number of options per question.
    has_image (`list[bool]`): whether the question has an image (the IMG subset).
Returns:
    accuracy, img_accuracy (in %), img_n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class Scienceqa(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, num_choices, has_image):
        correct = [scienceqa_correct(p, r, n) for p, r, n in zip(predictions, references, num_choices, strict=True)]
        image = [c for c, i in zip(correct, has_image, strict=True) if i]
        return {
            "accuracy": 100 * sum(correct) / len(correct),
            "img_accuracy": 100 * sum(image) / len(image) if image else None,
            "img_n": len(image),
        }
