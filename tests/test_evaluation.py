import numpy as np
import pytest

from motion_loop.evaluation import (
    KindClassifier,
    accuracy_by_kind,
    evaluation_prompts,
    mirror,
    motion_descriptor,
)
from motion_loop.humanml import rotate_y
from motion_loop.procedural import KINDS, caption_set, generate, make_dataset


@pytest.fixture(scope="module")
def classifier():
    return KindClassifier.fit_procedural(n_per_kind=12, seed=101)


def test_classifier_is_accurate_on_fresh_procedural_motions(classifier):
    data = make_dataset(4, np.random.default_rng(202), min_frames=60, max_frames=196, n_captions=0)
    result = accuracy_by_kind(classifier.predict([j for j, _, _ in data]), [k for _, _, k in data])
    assert result["overall"] >= 0.95, result
    assert set(result["per_kind"]) == set(KINDS)


def test_descriptor_ignores_position_heading_and_side():
    joints = generate("wave", 80, np.random.default_rng(0), n_captions=0).joints.astype(np.float64)
    d = motion_descriptor(joints)
    moved = rotate_y(joints, 1.1) + np.array([2.0, 0.0, -3.0])
    np.testing.assert_allclose(motion_descriptor(moved), d, atol=1e-3)
    np.testing.assert_allclose(motion_descriptor(mirror(joints)), d, atol=1e-3)
    np.testing.assert_array_equal(mirror(mirror(joints)), joints)
    with pytest.raises(ValueError, match="one motion"):
        motion_descriptor(joints[:5])


def test_classifier_labels_left_and_right_variants_alike(classifier):
    rng = np.random.default_rng(7)
    left = generate("kick", 120, rng, n_captions=0)
    params = dict(left.params, leg="right" if left.params["leg"] == "left" else "left")
    right = generate("kick", 120, rng, params=params, n_captions=0)
    assert classifier.predict([left.joints, right.joints]) == ["kick", "kick"]


def test_accuracy_by_kind_counts():
    result = accuracy_by_kind(["walk", "run", "walk", "jump"], ["walk", "walk", "walk", "jump"])
    assert result["overall"] == 0.75
    assert result["per_kind"] == {"walk": 2 / 3, "jump": 1.0}
    assert result["confusions"] == {"walk->run": 1}


def test_evaluation_prompts_come_from_the_split():
    pairs = evaluation_prompts("heldout", 2, seed=0)
    assert len(pairs) == 2 * len(KINDS) and [k for _, k in pairs[:2]] == [KINDS[0]] * 2
    train_texts = {c for kind in ("walk",) for c in caption_set(kind, {"pace": "slow", "curve": "straight"}, "train")}
    assert not any(p in train_texts for p, _ in pairs)
    assert evaluation_prompts("heldout", 2, seed=0) == pairs  # seeded


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    from motion_loop.evaluation import main

    assert main(["--model_path", str(tmp_path / "missing.pt"), "--n_per_kind", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "does not exist" in err and "\n" not in err
    existing = tmp_path / "report.json"
    existing.write_text("mine")
    assert main(["--model_path", "x.pt", "--output", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_text() == "mine"
