"""Writes ``svg/edited.svg``: a ladder sketch as an artist might leave it before "Refine the selected sketch".

The sketch is what the extension inserts for the recorded ``replies/ladder.jsonl`` (levels 2, 4, 6) over
``svg/plain.svg``; then, by hand: the whole group moved, stroke 0 moved (its own transform), stroke 1 reshaped,
stroke 2 deleted, stroke 3 locked and recoloured, stroke 4 recoloured and thickened, a path drawn into the top level
(a line then a cubic, with a path effect and node types as Inkscape's Pencil leaves them), a polyline drawn straight
into the group, and a text note that is no stroke. ``python tests/extension/data/make_edited.py`` (needs inkex).

``svg/edited_levels.svg``: the same ladder sketch with its levels edited: both strokes of the 4-stroke level deleted
(its group left empty), a path drawn into the sketch group below every level group, the 6-stroke level's group
hidden (as the Objects dialog hides a layer of the ladder) with its stroke 4 locked, and stroke 1 hidden by
``visibility:hidden`` (``python tests/extension/data/make_edited.py levels`` writes this file alone).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parents[2] / "inkscape_ext"))

import inkex  # noqa: E402
from clipasso_place import insert_sketch  # noqa: E402


def main() -> None:
    svg = inkex.load_svg(str(HERE / "svg" / "plain.svg")).getroot()
    result = json.loads((HERE / "replies" / "ladder.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    group = insert_sketch(svg, svg.getElementById("photo"), result, color=inkex.Color("black"))
    stroke = [svg.getElementById(f"clipasso-photo-stroke-{k}") for k in range(6)]
    group.set("transform", "translate(3,-2)")
    stroke[0].set("transform", "translate(6,4)")
    stroke[1].set("d", "M 40,60 C 45,50 55,50 60,60")
    stroke[2].delete()
    stroke[3].set("sodipodi:insensitive", "true")
    stroke[3].style["stroke"] = "#ff0000"
    stroke[4].style["stroke"] = "#0000ff"
    stroke[4].style["stroke-width"] = "2.5"
    drawn = inkex.PathElement()
    drawn.set("id", "path1")
    drawn.set("d", "M 30,40 L 50,50 C 60,60 70,60 80,50")
    drawn.set("sodipodi:nodetypes", "ccc")
    drawn.set("inkscape:path-effect", "#path-effect1")
    drawn.set("inkscape:original-d", "M 30,40 L 50,50 C 60,60 70,60 80,50")
    drawn.set("style", "fill:none;stroke:#008000;stroke-width:1.5")
    svg.getElementById("clipasso-photo-level-6").append(drawn)
    line = inkex.Polyline()
    line.set("id", "polyline1")
    line.set("points", "100,100 110,105")
    line.set("style", "fill:none;stroke:#000000;stroke-width:1")
    group.append(line)
    note = inkex.TextElement()
    note.set("id", "note")
    note.text = "not a stroke"
    group.append(note)
    (HERE / "svg" / "edited.svg").write_bytes(svg.tostring())


def levels() -> None:
    svg = inkex.load_svg(str(HERE / "svg" / "plain.svg")).getroot()
    result = json.loads((HERE / "replies" / "ladder.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    group = insert_sketch(svg, svg.getElementById("photo"), result, color=inkex.Color("black"))
    stroke = [svg.getElementById(f"clipasso-photo-stroke-{k}") for k in range(6)]
    stroke[2].delete()
    stroke[3].delete()
    drawn = inkex.PathElement()
    drawn.set("id", "path2")
    drawn.set("d", "M 30,40 C 40,30 50,30 60,40")
    drawn.set("style", "fill:none;stroke:#008000;stroke-width:1.5")
    group.insert(0, drawn)
    svg.getElementById("clipasso-photo-level-6").style["display"] = "none"
    stroke[4].set("sodipodi:insensitive", "true")
    stroke[1].style["visibility"] = "hidden"
    (HERE / "svg" / "edited_levels.svg").write_bytes(svg.tostring())


if __name__ == "__main__":
    # ``make_edited.py levels`` writes only edited_levels.svg (edited.svg is what replies/refine.jsonl answers).
    if sys.argv[1:] != ["levels"]:
        main()
    levels()
