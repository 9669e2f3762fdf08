"""What each benchmark asks the model: docs read from the sample files, prompts frozen (lmms-eval style snapshots)."""

from pathlib import Path

from hub_llava.eval import registry

SAMPLES = Path(__file__).parent.parent / "samples" / "eval"


def _docs(key):
    benchmark = registry.load(key)
    return benchmark, benchmark.helper.load_docs(benchmark, SAMPLES)


def test_pope_and_mme_docs_keep_llava_ids_and_texts():
    benchmark, docs = _docs("pope")
    assert len(docs) == 12 and docs[0]["question_id"] == 1 and docs[4]["question_id"] == 20000001
    assert docs[0]["image"] == SAMPLES / "pope" / "val2014" / "COCO_val2014_000000310196.jpg"
    assert (
        benchmark.text(docs[0]["question"])
        == docs[0]["prompt"]
        == ("Is there a snowboard in the image?\nAnswer the question using a single word or phrase.")
    )
    _, mme = _docs("mme")
    assert [d["question_id"] for d in mme[:2]] == ["existence/images/000000006040.jpg"] * 2
    assert mme[0]["image"].is_file()


def test_scienceqa_prompts_as_llava_model_vqa_science():
    benchmark, docs = _docs("scienceqa")
    text_only, with_image = docs[0], docs[1]
    assert text_only["image"] is None and with_image["image"] == SAMPLES / "scienceqa/images/test/5/image.png"
    assert benchmark.text(with_image["question"]) == (
        "Context: Figure: a parachute in a wind tunnel.\nWhich of the following could the test show?\n"
        "A. if the spacecraft was damaged\nB. how steady the parachute was\nC. whether it would swing at 400 km per hour"
        "\nAnswer with the option's letter from the given choices directly."
    )
    assert with_image["prompt"] == "<image>\n" + benchmark.text(with_image["question"])
    assert not text_only["prompt"].startswith("<image>")


def test_mmbench_docs_from_tsv():
    benchmark, docs = _docs("mmbench")
    assert [d["question_id"] for d in docs] == [0, 1000000, 1]
    assert docs[0]["image"].size == (48, 32)
    assert benchmark.text(docs[2]["question"]) == (
        "The background is white.\nWhat colour is the shape?\nA. blue\nB. red\n"
        "Answer with the option's letter from the given choices directly."
    )
    cn = registry.load("mmbench_cn")
    assert cn.text(docs[0]["question"]).endswith("\nC. triangle\n请直接回答选项字母。")


# pandas' default `na_values` (pandas.read_csv docs), typed here from the documentation, not from our module.
PANDAS_NA = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
             "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]  # fmt: skip


def _llava_is_none(value) -> bool:
    """LLaVA's `model_vqa_mmbench.is_none`, applied to what `pd.read_table` gives (the reference)."""
    import math

    if value is None or (type(value) is float and math.isnan(value)):
        return True
    return type(value) is str and value.lower() in ("nan", "none")


def _llava_question(row) -> str:
    """LLaVA's `model_vqa_mmbench.py`: options up to the first missing one, hint prepended unless missing."""
    options = []
    for letter in "ABCD":
        if _llava_is_none(row[letter]):
            break
        options.append(row[letter])
    question = row["question"] if _llava_is_none(row["hint"]) else row["hint"] + "\n" + row["question"]
    for letter, option in zip("ABCD", options):
        question = question + "\n" + letter + ". " + option
    return question


def test_mmbench_missing_values_as_llava_reads_them(tmp_path):
    import base64
    import io

    import pandas as pd
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    # Each pandas NA string once as the hint and once as option C (A and B always present, D after C); then the
    # fields pandas keeps as text but LLaVA's is_none still drops (any-case "nan"/"none"), and ones both keep.
    values = PANDAS_NA + ["NONE", "nOnE", "NAN", " NA", "NA ", "  ", "na", "N.A.", "Null value", "0"]
    rows = [
        "\t".join([str(i), f"Q{i}?", value, "left", "right", value, "after a gap", "A", image])
        for i, value in enumerate(values)
    ]
    folder = tmp_path / "mmbench"
    folder.mkdir()
    (folder / "mmbench_dev_20230712.tsv").write_text(
        "index\tquestion\thint\tA\tB\tC\tD\tanswer\timage\n" + "\n".join(rows) + "\n"
    )
    benchmark = registry.load("mmbench")
    docs = benchmark.helper.load_docs(benchmark, tmp_path)

    table = pd.read_table(folder / "mmbench_dev_20230712.tsv")
    assert [d["question"] for d in docs] == [_llava_question(row) for _, row in table.iterrows()]
    # Spelled out: a missing hint is not shown and the options stop at the missing C (D, after the gap, is not shown).
    for i, value in enumerate(values[: len(PANDAS_NA) + 3]):
        assert docs[i]["question"] == f"Q{i}?\nA. left\nB. right", value
    # Kept as text by both: pandas compares fields as written, nothing stripped.
    assert docs[values.index(" NA")]["question"] == " NA\nQ22?\nA. left\nB. right\nC.  NA\nD. after a gap"
    assert docs[values.index("  ")]["question"] == "  \nQ24?\nA. left\nB. right\nC.   \nD. after a gap"
    assert docs[values.index("0")]["question"] == "0\nQ28?\nA. left\nB. right\nC. 0\nD. after a gap"
