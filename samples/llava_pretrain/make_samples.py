"""Regenerates the LCS-558K sample release and its images (`python samples/llava_pretrain/make_samples.py`).

Layout as in liuhaotian/LLaVA-Pretrain: `blip_laion_cc_sbu_558k.json` (LLaVA format: one instruction with `<image>`
before or after it, one caption), `blip_laion_cc_sbu_558k_meta.json` (`id`, `image`, `url`, `blip_caption`) and
`images/NNNNN/NNNNNNNNN.jpg` (ids with leading zeros). The instructions are of the kind LLaVA's pretraining file uses
("Render a clear and concise summary of the photo."); the captions describe the PIL drawings. Two records break
LLaVA's `preprocess_plain` (two rounds; no `<image>`) and are rejected with their reason; one record has no meta entry.
"""

import json
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))

# id -> (size, background, shape, shape colour, caption)
IMAGES = {
    "004539375": ((160, 120), (70, 130, 200), "ellipse", (240, 200, 40), "a yellow sun in a clear blue sky"),
    "001819539": ((120, 160), (230, 230, 220), "rectangle", (200, 40, 40), "a red door on a white wall"),
    "002838027": ((160, 160), (40, 120, 60), "ellipse", (240, 120, 180), "a pink flower on green leaves"),
    "000024562": ((200, 120), (180, 160, 120), "rectangle", (60, 60, 70), "a dark car parked on a sandy road"),
    "003117880": ((140, 110), (20, 30, 60), "ellipse", (250, 250, 250), "the full moon in a night sky"),
    "005589163": ((120, 120), (210, 90, 40), "rectangle", (250, 230, 200), "a white window on an orange house"),
    "000400215": ((180, 135), (100, 170, 220), "rectangle", (120, 80, 40), "a wooden boat on a blue lake"),
    "006311004": ((130, 170), (240, 240, 240), "ellipse", (30, 30, 30), "a black ball on a white floor"),
}
INSTRUCTIONS = [
    "Render a clear and concise summary of the photo.\n<image>",
    "<image>\nDescribe the image concisely.",
    "Share a concise interpretation of the image provided.\n<image>",
    "<image>\nGive a brief description of the image.",
    "Provide a brief description of the given image.\n<image>",
    "<image>\nWrite a terse but informative summary of the picture.",
    "What is in the photo?\n<image>",
    "<image>\nSummarize the visual content of the image.",
]
NO_META = "006311004"  # listed in the release file, not in the meta file (its meta columns stay null)


def image_path(image_id: str) -> str:
    return f"{image_id[:5]}/{image_id}.jpg"


def draw(size, background, shape, colour) -> Image.Image:
    image = Image.new("RGB", size, background)
    width, height = size
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    getattr(ImageDraw.Draw(image), shape)(box, fill=colour, outline=(0, 0, 0))
    return image


def turns(*texts):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


def records() -> list[dict]:
    good = [
        {"id": image_id, "image": image_path(image_id), "conversations": turns(instruction, caption)}
        for (image_id, (*_, caption)), instruction in zip(IMAGES.items(), INSTRUCTIONS)
    ]
    bad = [
        {  # two rounds: LLaVA's preprocess_plain asserts exactly one
            "id": "007700001",
            "image": image_path("004539375"),
            "conversations": turns(INSTRUCTIONS[0], "a yellow sun", "What colour is the sky?", "Blue."),
        },
        {  # no <image> in the instruction
            "id": "007700002",
            "image": image_path("001819539"),
            "conversations": turns("Describe the image concisely.", "a red door"),
        },
    ]
    return good[:4] + bad[:1] + good[4:] + bad[1:]


def meta(release: list[dict]) -> list[dict]:
    return [
        {
            "id": record["id"],
            "image": record["image"],
            "url": f"https://example.com/lcs558k/{record['id']}.jpg",
            "blip_caption": record["conversations"][1]["value"],
        }
        for record in release
        if record["id"] != NO_META
    ]


def main() -> None:
    for image_id, (size, background, shape, colour, _) in IMAGES.items():
        path = os.path.join(HERE, "images", image_path(image_id))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        draw(size, background, shape, colour).save(path, "JPEG", quality=75)
    release = records()
    for name, data in (("blip_laion_cc_sbu_558k.json", release), ("blip_laion_cc_sbu_558k_meta.json", meta(release))):
        with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
