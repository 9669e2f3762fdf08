"""Regenerates the LVIS-Instruct4V and LLaVA-1.5 sample release files and the sample images
(`python samples/make_samples.py`).

The release files follow the real layout (LLaVA format: one JSON array of `{id, image?, conversations}`) with the
real image roots. The LVIS-Instruct4V texts are the paper's Figure 3 examples (arXiv 2311.07574); the academic-VQA
and text-only records are written in the style of LLaVA-1.5's mix665k. The images are small PIL drawings.
"""

import json
import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SHORT = "\nAnswer the question using a single word or phrase."

IMAGES = {
    "coco/train2017/000000033471.jpg": ((70, 110, 160), "bus"),
    "coco/train2017/000000052846.jpg": ((120, 160, 90), "street"),
    "coco/val2017/000000000139.jpg": ((200, 180, 150), "room"),
    "gqa/images/2354786.jpg": ((90, 140, 200), "sky"),
    "ocr_vqa/images/140031996.jpg": ((230, 230, 210), "book"),
    "textvqa/train_images/0054c91397f2fe05.jpg": ((40, 40, 60), "sign"),
    "vg/VG_100K/10.jpg": ((150, 120, 90), "park"),
    "vg/VG_100K_2/1.jpg": ((100, 100, 120), "clock"),
}


def draw(color, label, size=(160, 120)) -> Image.Image:
    image = Image.new("RGB", size, color)
    d = ImageDraw.Draw(image)
    d.rectangle((20, 30, 110, 90), fill=tuple(255 - c for c in color), outline=(0, 0, 0))
    d.ellipse((100, 10, 150, 60), fill=(240, 200, 40))
    d.text((26, 95), label, fill=(0, 0, 0))
    return image


def turns(*texts):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": text} for i, text in enumerate(texts)]


# LVIS-Instruct4V: two records per image (a conversation, a detailed description), train2017 and val2017 paths.
LVIS_CONVERSATIONS = [
    {
        "id": "000000052846",
        "image": "coco/train2017/000000052846.jpg",
        "conversations": turns(
            "<image>\nWhat do you see in the image?",
            "The image showcases a street view with several vehicles, street signs, and traffic lights. There's a "
            "pedestrian sidewalk, and the ambiance seems to be during the daytime.",
            "Can you tell me about the traffic lights in the image?",
            "Yes, there are several traffic lights dispersed throughout the image. They are positioned at various "
            "intersections and hanging overhead, helping to control the flow of traffic.",
        ),
    },
    {
        "id": "000000000139",
        "image": "coco/val2017/000000000139.jpg",
        "conversations": turns(
            "What furniture is in the room?\n<image>",
            "The room has a wooden dining table with chairs, a couch, and a shelf with books and a television.",
        ),
    },
]
LVIS_DETAILS = [
    {
        "id": "000000052846",
        "image": "coco/train2017/000000052846.jpg",
        "conversations": turns(
            "<image>\nDescribe the following image.",
            "A busy city street in daylight: cars drive down the middle of the road, traffic lights hang over the "
            "intersections, and a sidewalk with street signs runs along the buildings on the right.",
        ),
    },
    {
        "id": "000000000139",
        "image": "coco/val2017/000000000139.jpg",
        "conversations": turns(
            "<image>\nExplain the visual content of the image in great detail.",
            "A living room with a dining area: a wooden table and chairs in front of a window, a couch on the left, "
            "a television on a low cabinet, shelves with books and vases, and potted plants near the window.",
        ),
    },
]
LVIS_220K = [LVIS_CONVERSATIONS[0], LVIS_DETAILS[0], LVIS_CONVERSATIONS[1], LVIS_DETAILS[1]]

# LLaVA-1.5's own LLaVA-Instruct part (replaced by LVIS-Instruct4V in mix730k / nodetail_mix619k).
LLAVA_INSTRUCT = [
    {
        "id": "000000033471",
        "image": "coco/train2017/000000033471.jpg",
        "conversations": turns(
            "<image>\nWhat are the colors of the bus in the image?",
            "The bus in the image is white and red.",
            "What feature can be seen on the back of the bus?",
            "The back of the bus features an advertisement.",
        ),
    },
]

# LLaVA-Instruct-150K as `llava_instruct_150k.json` holds it: bare COCO train2017 file names (LLaVA read them with
# `--image_folder coco/train2017`), `<image>` before or after the first question.
LLAVA_INSTRUCT_150K = [
    {**LLAVA_INSTRUCT[0], "image": "000000033471.jpg"},
    {
        "id": "000000052846",
        "image": "000000052846.jpg",
        "conversations": turns(
            "Where is this picture taken?\n<image>",
            "The picture is taken on a busy city street, with cars on the road and traffic lights over the "
            "intersections.",
        ),
    },
]

# LLaVA-1.5's academic data and text-only records, as in llava_v1_5_mix665k.json.
ACADEMIC = [
    {
        "id": "000000033471_vqa",
        "image": "coco/train2017/000000033471.jpg",
        "conversations": turns("<image>\nWhat color is the bus?" + SHORT, "White and red"),
    },
    {
        "id": "2354786",
        "image": "gqa/images/2354786.jpg",
        "conversations": turns(
            "<image>\nIs the sky dark?" + SHORT, "Yes", "What is on the white wall?" + SHORT, "Pipe"
        ),
    },
    {
        "id": "140031996",
        "image": "ocr_vqa/images/140031996.jpg",
        "conversations": turns(
            "<image>\nWho wrote this book?\nAnswer the question using a single word or phrase.",
            "Dr. Bernard Schwartz",
            "Is this a sociopolitical book?",
            "No",
        ),
    },
    {
        "id": "0054c91397f2fe05",
        "image": "textvqa/train_images/0054c91397f2fe05.jpg",
        "conversations": turns(
            "<image>\nWhat is the brand of this camera?\nReference OCR token: nous, les, dakota" + SHORT, "Dakota"
        ),
    },
    {
        "id": "1",
        "image": "vg/VG_100K_2/1.jpg",
        "conversations": turns(
            "<image>\nPlease provide the bounding box coordinate of the region this sentence describes: "
            "clock on the building.",
            "[0.53, 0.15, 0.62, 0.72]",
        ),
    },
    {
        "id": "10",
        "image": "vg/VG_100K/10.jpg",
        "conversations": turns(
            "<image>\nPlease provide a short description for this region: [0.12, 0.40, 0.47, 0.91].",
            "A wooden park bench.",
        ),
    },
    {
        "id": "wgByO4Y_0",
        "model": "",
        "conversations": turns(
            "What is the boiling point of water at sea level?",
            "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
            "And on a high mountain?",
            "Lower: the air pressure is lower, so water boils at a lower temperature (about 70 °C on Everest).",
        ),
    },
    {
        # A real failure mode of the ShareGPT part: a turn with no text. Rejected with its reason (see README).
        "id": "i6IyJda_12",
        "conversations": turns("Continue writing please", ""),
    },
]


def main() -> None:
    for relative, (color, label) in IMAGES.items():
        path = os.path.join(HERE, "images", relative)
        if os.path.exists(path):
            continue  # never overwrite: the SVIT samples share the VG images and need their own sizes
        os.makedirs(os.path.dirname(path), exist_ok=True)
        draw(color, label).save(path, "JPEG", quality=75)
    releases = {
        "lvis_instruct4v_220k.json": LVIS_220K,
        "lvis_instruct4v_mix730k.json": LVIS_220K + ACADEMIC,
        "lvis_instruct4v_nodetail_mix619k.json": LVIS_CONVERSATIONS + ACADEMIC,
        "llava_v1_5_mix665k.json": LLAVA_INSTRUCT + ACADEMIC,
        "llava_instruct_150k.json": LLAVA_INSTRUCT_150K,
    }
    os.makedirs(os.path.join(HERE, "lvis_instruct4v"), exist_ok=True)
    for name, records in releases.items():
        with open(os.path.join(HERE, "lvis_instruct4v", name), "w", encoding="utf-8") as f:
            json.dump(records, f, indent=2, ensure_ascii=False)
            f.write("\n")


if __name__ == "__main__":
    main()
