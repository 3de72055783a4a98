"""Captions for procedural motions, in HumanML3D's style ("a person walks forward slowly").

Each kind has training templates and a separate set of held-out paraphrases that use other verbs,
subjects and phrasing; held-out captions never occur in training data, so they measure whether a
model generalises to new wording. Templates expand combinatorially over slots ({s} subject, {p}
possessive, {r} pronoun, plus kind-specific slots) whose options follow the motion's parameters
(pace, hand, leg, direction, ...).
"""

from __future__ import annotations

import itertools
import re
import string

import numpy as np

SPLITS = ("train", "heldout")

# (subject, possessive, pronoun)
_SUBJECTS = {
    "train": [("a person", "their", "they"), ("someone", "their", "they"), ("the person", "their", "they"),
              ("a man", "his", "he"), ("the man", "his", "he"), ("a woman", "her", "she"),
              ("the woman", "her", "she"), ("a guy", "his", "he")],
    "heldout": [("an individual", "their", "they"), ("somebody", "their", "they"),
                ("a lady", "her", "she"), ("a gentleman", "his", "he")],
}

# The plainest training subject: a caption bank keeps only captions with it (the subject says
# nothing about the motion, and one subject keeps the bank 8x smaller).
PLAIN_SUBJECT = _SUBJECTS["train"][0][0]

_CLOCK = {"left": "counterclockwise", "right": "clockwise"}


def _expand(templates, slots, split):
    out = []
    formatter = string.Formatter()
    for template in templates:
        names = [name for _, name, _, _ in formatter.parse(template) if name]
        keys = [k for k in dict.fromkeys(names) if k not in ("s", "p", "r")]
        for subject, possessive, pronoun in _SUBJECTS[split]:
            who = dict(s=subject, p=possessive, r=pronoun)
            for combo in itertools.product(*(slots[k] for k in keys)):
                # Slot options may mention the subject too ("swinging {p} arms").
                values = {k: v.format(**who) for k, v in zip(keys, combo)}
                out.append(_clean(template.format(**values, **who)))
    return list(dict.fromkeys(out))


def _clean(text):
    text = re.sub(r"\s+", " ", text).strip()
    text = text.replace(" ,", ",").replace(",,", ",")
    return text.strip(" ,")


def _walk(p, split):
    if split == "train":
        speed = {"slow": ["slowly", "at a slow pace", "leisurely"], "normal": ["", "at a normal pace", "at a steady pace"],
                 "fast": ["quickly", "fast", "briskly", "at a fast pace"]}[p["pace"]]
        direction = {"straight": ["forward", "straight ahead", "forwards", "in a straight line"],
                     "left": ["forward while curving to the left", "in a gentle curve to the left", "forward, veering left"],
                     "right": ["forward while curving to the right", "in a gentle curve to the right", "forward, veering right"]}[p["curve"]]
        templates = ["{s} walks {d} {v}", "{s} is walking {d} {v}", "{s} walks {v} {d}", "{s} strides {d} {v}",
                     "{s} walks {d} {v}, swinging {p} arms", "walking {d} {v}, {s} swings {p} arms",
                     "{s} takes a walk {d} {v}", "{s} paces {d} {v}", "{s} walks {d} {v} with a relaxed gait",
                     "{s} steps {d} {v}", "{s} is taking steps {d} {v}"]
    else:
        speed = {"slow": ["unhurriedly", "in no hurry"], "normal": ["at an ordinary tempo", ""],
                 "fast": ["hurriedly", "in a hurry", "rapidly"]}[p["pace"]]
        direction = {"straight": ["ahead", "onward"], "left": ["bearing to the left", "arcing leftward"],
                     "right": ["bearing to the right", "arcing rightward"]}[p["curve"]]
        templates = ["{s} strolls {d} {v}", "{s} proceeds {d} on foot {v}", "{s} ambles {d} {v}"]
    return templates, dict(d=direction, v=speed)


def _run(p, split):
    direction = {"straight": ["forward", "straight ahead", "forwards"],
                 "left": ["forward, curving left", "in an arc to the left"],
                 "right": ["forward, curving right", "in an arc to the right"]}[p["curve"]]
    if split == "train":
        templates = {
            "jog": ["{s} jogs {d}", "{s} is jogging {d}", "{s} runs {d} at an easy pace", "{s} jogs {d} lightly",
                    "{s} runs slowly {d}", "{s} goes for a jog {d}", "{s} jogs {d} swinging {p} arms",
                    "{s} does a light run {d}", "{s} jogs {d} at a steady pace", "{s} is running slowly {d}"],
            "run": ["{s} runs {d}", "{s} is running {d}", "{s} runs {d} quickly", "{s} runs {d} pumping {p} arms",
                    "{s} starts running {d}", "{s} is running {d} at a good pace", "{s} runs {d} with long strides",
                    "{s} runs {d} fast", "{s} goes for a run {d}", "running {d}, {s} swings {p} bent arms"],
            "fast": ["{s} sprints {d}", "{s} runs {d} very fast", "{s} is sprinting {d}", "{s} runs {d} as fast as {r} can",
                     "{s} sprints {d} pumping {p} arms", "{s} runs quickly {d}", "{s} is running fast {d}",
                     "{s} does a fast sprint {d}", "{s} races {d} at full speed", "{s} runs {d} at top speed"],
        }[p["pace"]]
    else:
        direction = {"straight": ["ahead", "onward"], "left": ["bearing left"], "right": ["bearing right"]}[p["curve"]]
        templates = {"jog": ["{s} trots {d}", "{s} moves {d} at a gentle running gait", "{s} lopes {d}"],
                     "run": ["{s} dashes {d}", "{s} hurries {d} at a running gait", "{s} rushes {d} on foot"],
                     "fast": ["{s} bolts {d}", "{s} dashes {d} with all {p} might", "{s} tears {d} at breakneck speed"]}[p["pace"]]
    return templates, dict(d=direction)


def _march(p, split):
    if split == "train":
        arms = {"straight": ["with straight arms", "swinging {p} straight arms"],
                "bent": ["pumping {p} arms", "swinging {p} bent arms"]}[p["style"]]
        speed = {"quick": ["quickly", "fast"], "slow": ["slowly"], "normal": [""]}[p["pace"]]
        templates = ["{s} marches in place {v}", "{s} marches on the spot {v}", "{s} is marching in place {a}",
                     "{s} marches in place lifting {p} knees high", "{s} stomps in place {v}",
                     "{s} steps in place raising {p} knees {v}", "{s} marches without moving forward {a}",
                     "{s} does high knees in place {v}", "{s} is marching on the spot {v}", "{s} marches in place {a}",
                     "{s} lifts {p} knees in a march in place"]
        slots = dict(a=arms, v=speed)
    else:
        templates = ["{s} lifts {p} knees alternately while staying put", "{s} performs high steps on the spot",
                     "{s} treads in place like a soldier"]
        slots = {}
    return templates, slots


def _jump(p, split):
    if split == "train":
        arms = {"swing": ["swinging {p} arms up", "with {p} arms swinging overhead"],
                "still": ["with {p} arms at {p} sides", "keeping {p} arms low"]}[p["style"]]
        size = {"high": ["high", "as high as {r} can"], "small": ["", "a little"]}[p["size"]]
        templates = ["{s} jumps in place", "{s} jumps up and down", "{s} jumps straight up {h}", "{s} is jumping in place",
                     "{s} jumps {h} and lands in the same spot", "{s} jumps repeatedly in place", "{s} bends {p} knees and jumps {h}",
                     "{s} jumps in place {a}", "{s} does vertical jumps", "{s} jumps {h} {a}", "{s} crouches and jumps up"]
        slots = dict(a=arms, h=size)
    else:
        templates = ["{s} leaps upward and lands where {r} started", "{s} springs into the air from a crouch",
                     "{s} bounds vertically off the ground"]
        slots = {}
    return templates, slots


def _jacks(p, split):
    if split == "train":
        speed = {"quick": ["quickly", "fast"], "steady": ["", "steadily"]}[p["pace"]]
        arms = {"overhead": ["raising {p} arms overhead", "clapping {p} hands above {p} head"],
                "shoulder": ["raising {p} arms to shoulder height", "lifting {p} arms out to the sides"]}[p["arms"]]
        templates = ["{s} does jumping jacks {v}", "{s} is doing jumping jacks", "{s} performs jumping jacks {v}",
                     "{s} does star jumps", "{s} jumps while spreading {p} arms and legs", "{s} does a set of jumping jacks",
                     "{s} jumps {p} legs apart {a}", "{s} exercises with jumping jacks", "{s} does jumping jacks {a}",
                     "{s} is doing star jumps {v}", "{s} warms up with jumping jacks"]
        slots = dict(v=speed, a=arms)
    else:
        templates = ["{s} hops feet wide and together while lifting and lowering the arms",
                     "{s} performs a calisthenics drill, opening and closing the limbs in a hop",
                     "{s} bounces with legs splaying out and arms sweeping up"]
        slots = {}
    return templates, slots


def _wave(p, split):
    hand = p["hand"]
    if split == "train":
        height = {"shoulder": ["at shoulder height", ""], "high": ["above {p} head", "high in the air"]}[p["height"]]
        if hand == "both":
            templates = ["{s} waves with both hands", "{s} waves both arms {h}", "{s} raises both hands and waves",
                         "{s} is waving with both hands {h}", "{s} waves hello with both hands", "{s} waves both hands {h}",
                         "{s} lifts both arms and waves", "{s} waves goodbye with both hands", "{s} stands and waves both hands",
                         "{s} excitedly waves with both hands {h}"]
        else:
            templates = ["{s} waves with {p} {hand} hand", "{s} waves {p} {hand} hand {h}", "{s} raises {p} {hand} hand and waves",
                         "{s} is waving {p} {hand} hand", "{s} waves hello with {p} {hand} hand", "{s} waves goodbye with the {hand} hand",
                         "{s} lifts {p} {hand} arm and waves {h}", "{s} stands still and waves {p} {hand} hand",
                         "{s} waves at someone with {p} {hand} hand", "{s} uses {p} {hand} hand to wave {h}"]
        slots = dict(h=height, hand=[hand])
    else:
        which = "both" if hand == "both" else "the " + hand
        templates = [f"{{s}} greets a passer-by by moving {which} palm{'s' if hand == 'both' else ''} side to side",
                     f"{{s}} signals hi, swaying {which} forearm{'s' if hand == 'both' else ''} back and forth",
                     f"{{s}} salutes a friend with {which} hand{'s' if hand == 'both' else ''} up, flapping"]
        slots = {}
    return templates, slots


def _squat(p, split):
    if split == "train":
        arms = {"forward": ["with {p} arms held out in front", "reaching {p} arms forward"],
                "hips": ["with {p} hands on {p} hips"], "head": ["with {p} hands behind {p} head"],
                "clasped": ["with {p} hands clasped in front of {p} chest"]}[p["arms"]]
        depth = {"deep": ["deep", "full"], "half": ["", "half"]}[p["size"]]
        speed = {"slow": ["slowly", ""], "normal": [""]}[p["pace"]]
        templates = ["{s} does {z} squats {v}", "{s} squats down and stands back up {v}", "{s} is squatting {a}",
                     "{s} performs {z} squats {a}", "{s} bends {p} knees into a {z} squat and rises", "{s} does bodyweight squats {v}",
                     "{s} squats {a}", "{s} crouches down and gets back up {v}", "{s} does squats {a}",
                     "{s} squats repeatedly {v}", "{s} does a {z} squat {a}"]
        slots = dict(a=arms, z=depth, v=speed)
    else:
        templates = ["{s} lowers {p} hips toward the floor then rises, repeating",
                     "{s} sinks down by flexing the legs and straightens again", "{s} performs knee bends"]
        slots = {}
    return templates, slots


def _kick(p, split):
    leg = p["leg"]
    if split == "train":
        height = {"high": ["high", "up high"], "middle": ["", "at waist height"], "low": ["low", ""]}[p["height"]]
        arms = {"guard": ["with {p} fists up", ""], "out": ["with {p} arms out for balance", ""]}[p["arms"]]
        templates = ["{s} kicks with {p} {leg} leg", "{s} kicks forward with the {leg} foot {h}",
                     "{s} does a front kick with {p} {leg} leg", "{s} kicks {p} {leg} leg out in front {h}",
                     "{s} is kicking with {p} {leg} foot", "{s} lifts {p} {leg} knee and kicks forward",
                     "{s} kicks {h} with the {leg} leg {a}", "{s} kicks repeatedly with {p} {leg} leg",
                     "{s} practices front kicks with the {leg} leg", "{s} kicks {p} {leg} foot forward {a}"]
        slots = dict(h=height, a=arms, leg=[leg])
    else:
        templates = [f"{{s}} thrusts the {leg} foot forward", f"{{s}} snaps the {leg} shin out ahead like a martial artist",
                     f"{{s}} strikes the air in front with the {leg} foot"]
        slots = {}
    return templates, slots


def _punch(p, split):
    hand = p["hand"]
    if split == "train":
        speed = {"fast": ["quickly", "fast"], "normal": [""]}[p["pace"]]
        if hand == "both":
            templates = ["{s} punches {v}", "{s} throws punches {v}", "{s} punches with both hands", "{s} is boxing",
                         "{s} throws alternating punches {v}", "{s} punches the air {v}", "{s} shadow boxes",
                         "{s} throws left and right punches", "{s} punches forward with both fists {v}",
                         "{s} boxes, punching with {p} left and right hands", "{s} is punching {v}"]
            slots = dict(v=speed)
        else:
            templates = ["{s} punches with {p} {hand} hand {v}", "{s} throws {hand} punches", "{s} jabs with {p} {hand} fist {v}",
                         "{s} punches forward with the {hand} arm", "{s} repeatedly punches with {p} {hand} hand",
                         "{s} punches the air with {p} {hand} fist", "{s} is punching with {p} {hand} hand {v}",
                         "{s} throws a {hand} jab {v}", "{s} boxes with {p} {hand} hand", "{s} punches {v} with the {hand} hand"]
            slots = dict(v=speed, hand=[hand])
    else:
        which = "both fists" if hand == "both" else f"the {hand} fist"
        templates = [f"{{s}} strikes at the air with {which}", f"{{s}} spars against an invisible opponent using {which}",
                     f"{{s}} hits ahead like a fighter with {which}"]
        slots = {}
    return templates, slots


def _sidestep(p, split):
    if split == "train":
        arms = {"clap": ["while clapping", "clapping {p} hands"], "swing": ["swinging {p} arms", ""]}[p["arms"]]
        speed = {"fast": ["quickly", "energetically"], "relaxed": ["", "casually"]}[p["pace"]]
        templates = ["{s} dances side to side {a}", "{s} does a side step dance {v}", "{s} steps from side to side {a}",
                     "{s} dances stepping left and right {v}", "{s} does a step touch {a}", "{s} sways and steps side to side",
                     "{s} dances in place stepping sideways {a}", "{s} side steps to the music {v}", "{s} is dancing side to side {v}",
                     "{s} dances by stepping sideways and back {a}"]
        slots = dict(a=arms, v=speed)
    else:
        templates = ["{s} grooves by shuffling laterally back and forth", "{s} moves left then right to a rhythm",
                     "{s} does a two-step groove toward either side"]
        slots = {}
    return templates, slots


def _circles(p, split):
    if split == "train":
        size = {"small": ["small", ""], "big": ["big", "large"]}[p["size"]]
        direction = {"forward": ["forward", "forwards"], "backward": ["backward", "backwards"]}[p["direction"]]
        templates = ["{s} does arm circles", "{s} circles {p} arms {d}", "{s} makes {z} circles with {p} arms",
                     "{s} rotates {p} arms in {z} circles", "{s} does {z} {d} arm circles", "{s} circles {p} outstretched arms {d}",
                     "{s} holds {p} arms out and circles them {d}", "{s} swings {p} arms around in {z} circles",
                     "{s} does arm circle exercises", "{s} is doing {z} arm circles {d}"]
        slots = dict(z=size, d=direction)
    else:
        templates = ["{s} twirls {p} extended arms", "{s} loosens the shoulders by rotating the stretched limbs",
                     "{s} spins both arms in loops at shoulder level"]
        slots = {}
    return templates, slots


def _walk_circle(p, split):
    d = p["direction"]
    if split == "train":
        speed = {"slow": ["slowly", ""], "normal": [""]}[p["pace"]]
        templates = ["{s} walks in a circle {v}", "{s} walks in a circle to the {d}", "{s} walks around in a circle",
                     "{s} walks in a {c} circle", "{s} is walking in circles {v}", "{s} walks {c} in a circle",
                     "{s} circles around while walking {v}", "{s} walks around in a loop to the {d}",
                     "{s} walks in a circle turning {d}", "{s} paces in a circle {v}", "{s} walks in a round path to the {d}"]
        slots = dict(v=speed, d=[d], c=[_CLOCK[d]])
    else:
        templates = [f"{{s}} strolls along a round track, going {_CLOCK[d]}", "{s} goes round and round on foot",
                     "{s} ambles around a ring"]
        slots = {}
    return templates, slots


def _turn(p, split):
    d = p["direction"]
    if split == "train":
        speed = {"slow": ["slowly"], "normal": [""], "quick": ["quickly"]}[p["pace"]]
        templates = ["{s} turns in place {v}", "{s} turns around", "{s} turns to the {d} {v}", "{s} turns around in place to the {d}",
                     "{s} rotates to the {d} on the spot", "{s} turns {c} {v}", "{s} is turning around {v}", "{s} keeps turning to the {d}",
                     "{s} steps around in place, turning {d}", "{s} turns {p} body around to the {d} {v}", "{s} spins {v} to the {d}"]
        slots = dict(v=speed, d=[d], c=[_CLOCK[d]])
    else:
        templates = [f"{{s}} pivots on the spot towards the {d}", "{s} revolves while standing", "{s} swivels around"]
        slots = {}
    return templates, slots


_TEMPLATES = {
    "walk": _walk, "run": _run, "march": _march, "jump": _jump, "jumping_jacks": _jacks, "wave": _wave,
    "squat": _squat, "kick": _kick, "punch": _punch, "side_step": _sidestep, "arm_circles": _circles,
    "walk_circle": _walk_circle, "turn": _turn,
}


def caption_set(kind: str, params: dict, split: str = "train") -> list[str]:
    """Every caption of ``split`` that describes a motion of ``kind`` with these parameters."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    templates, slots = _TEMPLATES[kind](params, split)
    return _expand(templates, slots, split)


def captions(kind: str, params: dict, rng: np.random.Generator, split: str = "train", n: int = 3) -> list[str]:
    """``n`` distinct captions (fewer if the set is smaller) drawn from ``caption_set``."""
    pool = caption_set(kind, params, split)
    index = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[i] for i in index]
