"""MME: the official eval tool's yes/no parsing, per-task acc + acc+ and the perception / cognition totals."""

PERCEPTION = ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"]
COGNITION = ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"]


def mme_parse(text: str) -> str:
    """ "yes"/"no" when the lower-cased answer is exactly that, else when its first 4 characters contain it, else "other"."""
    text = text.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def mme_task_score(pairs: list[list[tuple[str, str]]]) -> dict:
    """Scores one task from its images: each a list of exactly two (prediction, ground truth) pairs.

    Returns `acc` and `acc_plus` (images with both answers right) in %, `score` = acc + acc_plus, and the count of
    answers that parsed to neither yes nor no.
    """
    if not pairs:
        raise ValueError("An MME task with no images cannot be scored.")
    correct = plus = other = 0
    for image in pairs:
        if len(image) != 2:
            raise ValueError(f"MME needs exactly two questions per image, got {len(image)}.")
        right = 0
        for prediction, truth in image:
            if truth.lower() not in ("yes", "no"):
                raise ValueError(f"MME ground truth must be yes or no, got {truth!r}.")
            parsed = mme_parse(prediction)
            other += parsed == "other"
            right += parsed == truth.lower()
        correct += right
        plus += right == 2
    acc = 100 * correct / (2 * len(pairs))
    acc_plus = 100 * plus / len(pairs)
    return {"acc": acc, "acc_plus": acc_plus, "score": acc + acc_plus, "other": other, "images": len(pairs)}


def mme_totals(task_scores: dict[str, dict]) -> dict:
    """Perception and cognition totals (sums of the task scores present); a total none of whose tasks was evaluated
    is `None` (not evaluated), never 0."""

    def total(tasks):
        present = [task_scores[t]["score"] for t in tasks if t in task_scores]
        return sum(present) if present else None

    return {
        "perception": total(PERCEPTION),
        "cognition": total(COGNITION),
        "missing_perception_tasks": [t for t in PERCEPTION if t not in task_scores],
        "missing_cognition_tasks": [t for t in COGNITION if t not in task_scores],
    }
