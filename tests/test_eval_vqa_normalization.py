"""VQA answer normalisation against a second transcription of the official tables and rules.

The tables below were transcribed for this test from the official VQA evaluation script, GT-Vision-Lab/VQA
`PythonEvaluationTools/vqaEvaluation/vqaEval.py` @ a013f00 (`contractions`, `manualMap`, `articles`, `punct`); EvalAI's
answer processor as LLaVA ships it (`llava/eval/m4c_evaluator.py`, `EvalAIAnswerProcessor`) carries the same four.
They are not read from `hub_llava/eval/metrics/vqa_normalization.json`: the test compares the two.
"""

import json
from pathlib import Path

import pytest

from hub_llava.eval.metrics import vqa

# fmt: off
OFFICIAL_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
OFFICIAL_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
OFFICIAL_ARTICLES = ["a", "an", "the"]
OFFICIAL_PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
                  "!"]
# fmt: on
TABLES = json.loads((Path(vqa.__file__).parent / "vqa_normalization.json").read_text(encoding="utf-8"))


def test_tables_equal_the_official_transcription():
    assert len(OFFICIAL_CONTRACTIONS) == 120 and len(OFFICIAL_NUMBERS) == 12
    assert TABLES["contractions"] == OFFICIAL_CONTRACTIONS == vqa.CONTRACTIONS
    assert TABLES["number_words"] == OFFICIAL_NUMBERS == vqa.NUMBER_WORDS
    assert TABLES["articles"] == OFFICIAL_ARTICLES and vqa.ARTICLES == set(OFFICIAL_ARTICLES)
    assert TABLES["punctuation"] == OFFICIAL_PUNCT == vqa.PUNCTUATION


@pytest.mark.parametrize(("word", "restored"), list(OFFICIAL_CONTRACTIONS.items()))
def test_every_contraction_is_restored(word, restored):
    # processDigitArticle lower-cases before the lookup, so the four capitalised keys (Id've, I'dve, Im, Ive) can never
    # match: they come out lower-cased and unrestored, as in the official script.
    expected = restored if word == word.lower() else word.lower()
    assert vqa.process_digit_article(word) == expected
    # Through the whole official accuracy: answers that differ are normalised too (the apostrophe is not in the
    # punctuation list), so the bare form matches 3 answers written with the apostrophe: (3 x 2/3 + 7 x 1) / 10.
    if word == word.lower():
        assert vqa.vqa_sample_accuracy(word, [restored] * 3 + ["other"] * 7) == pytest.approx(0.9)


@pytest.mark.parametrize(("word", "digit"), list(OFFICIAL_NUMBERS.items()))
def test_every_number_word_becomes_its_digit(word, digit):
    assert vqa.process_digit_article(f"{word.capitalize()} dogs") == f"{digit} dogs"  # lower-cased first
    assert vqa.vqa_sample_accuracy(word, [digit] * 3 + ["other"] * 7) == pytest.approx(0.9)


def test_number_words_outside_the_table_are_kept():
    # Only zero..ten (and "none" -> "0"); no other number word, no digit-to-word mapping.
    assert vqa.process_digit_article("eleven twenty 3 none") == "eleven twenty 3 0"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A punctuation mark with no space on either side becomes a space ...
        ("t-shirt", "t shirt"), ("a/b", "a b"), ("yes!", "yes "), ("(left)", " left "),
        # ... and one with a space next to it anywhere in the text is removed everywhere (not spaced out); each mark
        # is judged on its own: " (" removes "(", while ")" has no space next to it and becomes one.
        ("t - shirt", "t  shirt"), ("red, white", "red white"), ("left (mostly)", "left mostly "),
        # A comma between digits anywhere makes every mark be removed.
        ("1,000", "1000"), ("1,000-2,000", "10002000"),
        # Not in the list: apostrophe, colon, percent, asterisk, ampersand.
        ("it's", "it's"), ("12:30", "12:30"), ("50%", "50%"), ("a*b&c", "a*b&c"),
        # Periods: removed unless a digit follows (the lookbehind typo "(?!<=\d)" makes "5." lose its period too).
        ("dog.", "dog"), ("3.5", "3.5"), ("5.", "5"), ("e.g.", "eg"), (".5", ".5"),
        # `re.UNICODE` lands in `count`: only the first 32 periods go.
        ("a" + "." * 40, "a" + "." * 8),
    ],
)  # fmt: skip
def test_punctuation_rules(text, expected):
    assert vqa.process_punctuation(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a dog", "dog"), ("A Dog", "dog"), ("the A", ""), ("an apple a day", "apple day"), ("theater", "theater"),
     ("  the   red  one ", "red 1")],
)  # fmt: skip
def test_article_rules(text, expected):
    assert vqa.process_digit_article(text) == expected


def test_official_accuracy_normalises_only_when_the_answers_differ():
    # Identical answers: nothing is normalised on either side, not even case or a trailing period.
    assert vqa.vqa_sample_accuracy("Two", ["2"] * 10) == 0.0
    assert vqa.vqa_sample_accuracy("dog.", ["dog"] * 10) == 0.0
    # Differing answers: both sides are punctuation + digit/article processed (the 2021 fix of vqaEval.py):
    # "A Dog." -> "dog"; answers "a dog" x3 -> "dog": 3 matches -> (3 x 2/3 + 7 x 1) / 10 = 0.9.
    assert vqa.vqa_sample_accuracy("A Dog.", ["a dog"] * 3 + ["cat"] * 7) == pytest.approx(0.9)
    # "Yes" answers are lower-cased too: 2 matches -> (2 x 1/3 + 8 x 2/3) / 10 = 0.6.
    assert vqa.vqa_sample_accuracy("yes", ["Yes", "YES"] + ["no"] * 8) == pytest.approx(0.6)


def test_evalai_processor_normalises_every_answer():
    # TextVQA's evaluator: lower-case, "," and "?" dropped, "'s" split off, then the same punctuation/digit/article
    # rules, applied to the prediction and every answer, identical or not.
    assert vqa.evalai_normalize("The Man's Two Dogs?") == "man 's 2 dogs"
    assert vqa.evalai_normalize("1,000 dont") == "1000 don't"
    assert vqa.vqa_sample_accuracy("Dog.", ["dog"] * 10, mode="evalai") == 1.0
