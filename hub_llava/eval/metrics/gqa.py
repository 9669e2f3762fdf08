"""GQA: LLaVA's answer conversion (`text.rstrip('.').lower()`) and the official balanced accuracy."""


def gqa_prediction(text: str) -> str:
    return text.rstrip(".").lower()


def gqa_scores(predictions: list[str], questions: list[dict]) -> dict:
    """Accuracy, binary and open accuracy (%) over balanced questions, as the official `eval.py` computes them.

    Args:
        predictions (`list[str]`): raw model answers aligned with `questions`.
        questions (`list[dict]`): official question entries (`answer`, `isBalanced`, `types.structural`).
    """
    scores: dict[str, list[bool]] = {"accuracy": [], "binary": [], "open": []}
    for text, question in zip(predictions, questions, strict=True):
        if not question.get("isBalanced", True):
            continue
        correct = gqa_prediction(text) == question["answer"]
        scores["accuracy"].append(correct)
        kind = "open" if question["types"]["structural"] == "query" else "binary"
        scores[kind].append(correct)
    # A kind with no question (e.g. no binary question in a --limit run) is not evaluated: None, never 0.
    result = {key: 100 * sum(values) / len(values) if values else None for key, values in scores.items()}
    result["n"] = len(scores["accuracy"])
    return result
