"""Transfer: pairing a task with another dataset through the shared vocabulary, reading its labels, scoring it.

Every number below is worked out by hand in a comment; the end-to-end runs on fixture layouts are in
tests/test_transfer_e2e.py.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from records import fake_record

from fairfacebench.data import UNMAPPED, Attribute, ConceptMap, LabeledSplit, Split, TaskData, TaskSpec
from fairfacebench.datasets.base import DatasetPlugin
from fairfacebench.datasets.celeba import CelebA
from fairfacebench.datasets.fairface import FairFace
from fairfacebench.datasets.utkface import CB_ATTRIBUTES, UTKFace, UTKFaceControlledBias
from fairfacebench.errors import ConfigError
from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.plugins import registry
from fairfacebench.record import SharedAttribute
from fairfacebench.spec import RunSpec
from fairfacebench.transfer import (
    TransferPlan,
    TransferTarget,
    combine,
    in_domain_groups,
    pair,
    score_transfer,
    shared_attribute,
    split_groups,
    transfer_input,
    transfer_labels,
)
from fairfacebench.typed import from_plain, to_plain


class Toy(DatasetPlugin):
    """Two sensitive attributes (one with a class no concept covers) and a target in the other order than gender's."""

    name = "toy"
    attributes = {
        "sex": Attribute("sex", ("F", "M")),
        "old": Attribute("old", ("no", "yes")),
        "skin": Attribute("skin", ("light", "dark", "unsure")),
        "kid": Attribute("kid", ("no", "yes")),
    }
    tasks = [TaskSpec("sex/old+skin", "sex", ("old", "skin")), TaskSpec("sex/skin+kid", "sex", ("skin", "kid"))]
    vocabulary = {
        "gender": {"sex": {"F": "female", "M": "male"}},
        "age_40": {"old": {"no": "0-39", "yes": "40+"}},
        "race_binary": {"skin": {"light": "white", "dark": "non-white", "unsure": None}},
        "child_adult": {"kid": {"no": "adult", "yes": "child"}},
    }


def cb_task(name: str = "gender/race") -> TaskSpec:
    return UTKFaceControlledBias().task(name)


# ---------------------------------------------------------------- pairing


def test_utkface_cb_reads_fairface_seven_races_as_its_white_non_white_groups():
    p = pair(UTKFaceControlledBias(), cb_task(), FairFace())
    (own, theirs), ((s_own, s_theirs),) = p.target, p.sensitive
    assert (own.concept, own.attribute, theirs.attribute) == ("gender", "gender", "gender")
    assert (s_own.concept, s_own.attribute, s_theirs.attribute) == ("race_binary", "race_binary", "race")
    assert p.group_names == ("white", "non-white") and p.groups_invertible and p.loaded_task is None


def test_the_finest_shared_concept_is_chosen_for_a_sensitive_attribute():
    # UTKFace race reads as race_binary (2 classes) and race4 (4); FairFace has both: race4, through its one-to-one
    # race4 attribute rather than its 7 races
    p = pair(UTKFace(), UTKFace().task("gender/race"), FairFace())
    ((own, theirs),) = p.sensitive
    assert (own.concept, theirs.attribute) == ("race4", "race4")
    assert p.group_names == ("white", "black", "asian", "indian") and not p.groups_invertible  # Others: no race4


def test_a_dataset_whose_splits_follow_the_task_is_loaded_with_a_task_holding_the_attributes():
    p = pair(FairFace(), FairFace().task("gender/race"), UTKFaceControlledBias())
    assert p.loaded_task == "gender/race" and p.group_names == ("white", "non-white")
    assert not p.groups_invertible  # 7 races cannot be told from White / non-White
    child = pair(UTKFaceControlledBias(), cb_task("gender/age"), FairFace())
    assert child.sensitive[0][1].attribute == "age" and child.group_names == ("adult", "child")
    with pytest.raises(ConfigError, match=r"utkface-cb loads its splits per task and none of its tasks"):
        pair(Toy(), Toy().tasks[1], UTKFaceControlledBias())  # needs race_binary and age_bias in one split


@pytest.mark.parametrize(
    "source, task, other, message",
    [
        (
            UTKFaceControlledBias(),
            "gender/race",
            CelebA(),
            r"^--eval-on celeba: utkface-cb task 'gender/race': its sensitive attribute 'race_binary' \(race_binary\) "
            r"has no counterpart in celeba, whose vocabulary covers gender <- Male, age_40 <- Young \(approximate\)$",
        ),
        (
            FairFace(),
            "age/gender",
            UTKFace(),
            r"^--eval-on utkface: fairface task 'age/gender': its target 'age' maps one-to-one onto no shared concept",
        ),
        (
            FairFace(),
            "race4/gender",
            UTKFaceControlledBias(),
            r"its target 'race4' \(race4\) has no counterpart in utkface-cb, whose vocabulary covers gender <- gender",
        ),
        (
            CelebA(),
            "Male/Young",
            UTKFaceControlledBias(),
            r"its sensitive attribute 'Young' \(age_40\) has no counterpart in utkface-cb",
        ),
        (FairFace(), "gender/race", FairFace(), r"trains on fairface: its test split is the run's own test split"),
    ],
)
def test_a_pairing_that_does_not_map_is_refused_naming_the_attribute_and_both_datasets(source, task, other, message):
    with pytest.raises(ConfigError, match=message):
        pair(source, source.task(task), other)


class TwoAges(Toy):
    """Reads age_40 from an exact attribute and, declared first, an approximate one."""

    name = "two-ages"
    attributes = {**Toy.attributes, "looks_young": Attribute("looks_young", ("no", "yes"))}
    vocabulary = {
        **Toy.vocabulary,
        "age_40": {
            "looks_young": ConceptMap({"no": "40+", "yes": "0-39"}, approximate="an impression, not an age"),
            "old": {"no": "0-39", "yes": "40+"},
        },
    }


def test_an_approximate_reading_pairs_and_says_so_and_an_exact_counterpart_comes_first():
    # CelebA Male/Young on UTKFace: Young (approximate) as age_40 against UTKFace's exact one-to-one age_binary
    p = pair(CelebA(), CelebA().task("Male/Young"), UTKFace())
    ((own, theirs),) = p.sensitive
    assert (own.attribute, own.concept, theirs.attribute) == ("Young", "age_40", "age_binary")
    assert "annotators' impression" in own.approximate and theirs.approximate == ""
    assert p.group_names == ("0-39", "40+") and p.groups_invertible  # Young reads one-to-one
    # UTKFace age_binary/gender on CelebA: the target reads CelebA's Young, approximately
    back = pair(UTKFace(), UTKFace().task("age_binary/gender"), CelebA())
    assert back.target[1].attribute == "Young" and back.target[1].approximate
    # the record's entry carries the note on the side that is approximate; an exact reading's plain form is as before
    young = shared_attribute(*p.sensitive[0])
    plain = to_plain(young)
    assert plain["source_approximate"] == own.approximate and "approximate" not in plain
    assert from_plain(SharedAttribute, plain) == young
    assert young.approximations("celeba", "utkface") == [f"celeba Young as age_40: {own.approximate}"]
    gender = to_plain(shared_attribute(*p.target))
    assert list(gender) == ["concept", "source_attribute", "source_classes", "attribute", "classes"]
    # a dataset with both readings of age_40 gives the exact one, though the approximate one is declared first
    exact = pair(UTKFace(), UTKFace().task("age_binary/gender"), TwoAges())
    assert (exact.target[1].attribute, exact.target[1].approximate) == ("old", "")


def test_a_dataset_without_a_vocabulary_is_refused():
    synth = registry().dataset("synthfaces")
    with pytest.raises(ConfigError, match=r"synthfaces declares no shared vocabulary"):
        pair(synth, synth.tasks[0], FairFace())


# ---------------------------------------------------------------- reading labels


def test_intersectional_groups_and_a_target_in_another_order():
    p = pair(Toy(), Toy().tasks[0], FairFace())
    assert p.group_names == ("0-39|white", "0-39|non-white", "40+|white", "40+|non-white")
    # toy a = old * 3 + skin: (no, light) 0 -> 0-39|white 0, (no, dark) 1 -> 1, (no, unsure) 2 -> left out,
    # (yes, light) 3 -> 40+|white 2, (yes, dark) 4 -> 3, (yes, unsure) 5 -> left out
    np.testing.assert_array_equal(in_domain_groups(p, np.arange(6)), [0, 1, UNMAPPED, 2, 3, UNMAPPED])
    # FairFace rows: (Male, 0-2, White), (Female, 40-49, Latino_Hispanic), (Male, more than 70, Middle Eastern).
    # gender Male -> male -> toy's M (code 1), Female -> toy's F (0); age_40: 0, 1, 1; race_binary: 0, 1, 1
    labels = {"gender": np.array([0, 1, 0]), "age": np.array([0, 5, 8]), "race": np.array([0, 2, 6])}
    y, groups, _ = transfer_labels(p, labels)
    np.testing.assert_array_equal(y, [1, 0, 1])
    np.testing.assert_array_equal(groups, [0, 3, 3])  # 0*2+0, 1*2+1, 1*2+1


def test_a_row_its_attribute_does_not_apply_to_stays_unmapped():
    p = pair(UTKFace(), UTKFace().task("gender/race"), FairFace())
    # FairFace race4 codes: White 0, Asian 2, not applicable -1 (a Latino_Hispanic row)
    _, groups, _ = transfer_labels(p, {"gender": np.array([0, 1, 1]), "race4": np.array([0, 2, -1])})
    np.testing.assert_array_equal(groups, [0, 2, UNMAPPED])


def test_combine_and_split_groups_are_inverse():
    parts = [np.array([0, 1, 1, 0]), np.array([2, 0, 1, UNMAPPED])]
    codes = combine(parts, [2, 3], 4)
    np.testing.assert_array_equal(codes, [2, 3, 4, UNMAPPED])  # 0*3+2, 1*3+0, 1*3+1
    np.testing.assert_array_equal(split_groups(np.array([2, 3, 4]), [2, 3])[1], [2, 0, 1])


# ---------------------------------------------------------------- scoring

SPEC = RunSpec(
    "utkface-cb", "gender/race", "erm", {}, seed=0, budget={"name": "b", "steps": 1, "batch_size": 1}, resolution=4
)


def images(n: int) -> np.ndarray:
    """Image i carries i in its first pixel, so a lookup predictor knows which row it sees."""
    out = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    out[:, 0, 0, 0] = np.arange(n)
    return out


class Lookup:
    """Predicts class `predicted[i]` for image i (one-hot scores) and remembers the groups it was given."""

    def __init__(self, predicted):
        self.predicted, self.groups = np.asarray(predicted), None

    def predict(self, images, groups=None):
        self.groups = groups
        return np.eye(2)[self.predicted[images[:, 0, 0, 0]]]


def evaluate_transfer(target, test, predictor, at_inference, data, test_scores, spec):
    """What a run does with a transfer dataset: the rows to predict, the predictor's scores of them, scored."""
    asked = transfer_input(target, test, at_inference, spec.method)
    return score_transfer(asked, predictor.predict(*asked.request), 0.0, data, test_scores, spec)


def cb_data() -> TaskData:
    """utkface-cb gender/race test rows (gender, race_binary): (M, W), (F, W), (M, nW), (F, nW)."""
    test = LabeledSplit(images(4), np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), np.array(list("abcd")))
    return TaskData(
        "utkface-cb",
        cb_task(),
        CB_ATTRIBUTES["gender"],
        (CB_ATTRIBUTES["race_binary"],),
        ("White", "non-White"),
        train=test,
        val=test,
        test=test,
    )


def fairface_test() -> Split:
    """Six FairFace test rows: gender Male, Female, Male, Female, Female, Male; race White, White, Black, East Asian,
    Middle Eastern, Latino_Hispanic."""
    gender, race = np.array([0, 1, 0, 1, 1, 0]), np.array([0, 0, 1, 3, 6, 2])
    race4 = np.array([0, 0, 1, 2, -1, -1])
    labels = {"gender": gender, "race": race, "race4": race4, "age": np.zeros(6, dtype=np.int64)}
    return Split(images(6), labels, np.array([f"val/{i}.jpg" for i in range(6)]))


def test_transfer_and_in_domain_scores_over_the_shared_groups():
    target = TransferTarget(pair(UTKFaceControlledBias(), cb_task(), FairFace()), "/data/ff", {}, "f1")
    data = cb_data()
    own_scores = np.eye(2)[[0, 1, 1, 1]]
    result, arrays = evaluate_transfer(
        target, fairface_test(), Lookup([0, 0, 0, 1, 1, 1]), False, data, own_scores, SPEC
    )
    # FairFace rows as (y, group, prediction): (0 m, white, 0) ok, (1 f, white, 0) wrong, (0, non-white, 0) ok,
    # (1, non-white, 1) ok, (1, non-white, 1) ok, (0, non-white, 1) wrong: acc 4/6.
    # white: TPR 0/1, FPR 0/1; non-white: TPR 2/2, FPR 1/2 -> eod_max max(1 - 0, 0.5 - 0) = 1; wga: (f, white) 0
    t = result.transfer
    assert (t.n, t.left_out) == (6, 0)
    assert t.metrics["acc"] == pytest.approx(4 / 6) and t.metrics["eod_max"] == 1.0 and t.metrics["wga"] == 0.0
    assert [(g["group"], g["n"]) for g in t.per_group["per_group"]] == [("white", 2), ("non-white", 4)]
    # in domain: race_binary reads one-to-one, so the shared groups are the run's own: its test metrics exactly
    # (y, a, prediction): (0, W, 0), (1, W, 1), (0, nW, 1), (1, nW, 1): acc 3/4, TPR gap 0, FPR gap 1 -> eod_max 1
    own = compute_metrics(data.test.y, own_scores.argmax(1), data.test.a, data.group_names).summary
    assert result.in_domain.metrics == own and own["acc"] == 0.75 and own["eod_max"] == 1.0
    assert result.in_domain.intervals is not None and "acc" in result.in_domain.intervals["intervals"]
    assert result.target.classes == {"Male": "male", "Female": "female"} and result.group_names == [
        "white",
        "non-white",
    ]
    assert result.sensitive[0].classes["Middle Eastern"] == "non-white"
    np.testing.assert_array_equal(arrays["transfer.fairface.groups"], [0, 0, 1, 1, 1, 1])
    assert (
        arrays["transfer.fairface.scores"].shape == (6, 2) and list(arrays["transfer.fairface.ids"])[0] == "val/0.jpg"
    )


def test_rows_no_shared_class_covers_are_left_out_on_both_sides():
    # utkface gender/race -> fairface reads race as race4: FairFace's Middle Eastern and Latino_Hispanic rows (4, 5)
    # and UTKFace's Others row (a = 4) are left out. Kept FairFace rows: y 0, 1, 0, 1, predicted 0, 1, 0, 1: acc 1;
    # kept UTKFace rows: y 0, 1, 0, 1, predicted 0, 1, 0, 1 (the Others row's wrong 1 does not count): acc 1
    task = UTKFace().task("gender/race")
    target = TransferTarget(pair(UTKFace(), task, FairFace()), None, {}, "f1")
    race = Attribute("race", ("White", "Black", "Asian", "Indian", "Others"))
    test = LabeledSplit(images(5), np.array([0, 1, 0, 1, 0]), np.arange(5), np.array(list("abcde")))
    data = TaskData("utkface", task, Attribute("gender", ("Male", "Female")), (race,), race.classes, test, test, test)
    result, arrays = evaluate_transfer(
        target,
        fairface_test(),
        Lookup([0, 1, 0, 1, 0, 0]),
        False,
        data,
        np.eye(2)[[0, 1, 0, 1, 1]],
        replace(SPEC, bootstrap=0),
    )
    assert (result.transfer.n, result.transfer.left_out) == (4, 2) and result.transfer.metrics["acc"] == 1.0
    assert (result.in_domain.n, result.in_domain.left_out) == (4, 1) and result.in_domain.metrics["acc"] == 1.0
    assert result.transfer.intervals is None and len(arrays["transfer.fairface.y"]) == 4


def test_a_predictor_reading_groups_gets_the_runs_own_group_codes():
    target = TransferTarget(pair(UTKFaceControlledBias(), cb_task(), FairFace()), None, {}, "f1")
    predictor = Lookup([0, 0, 0, 1, 1, 1])
    evaluate_transfer(target, fairface_test(), predictor, True, cb_data(), np.eye(2)[[0, 1, 1, 1]], SPEC)
    np.testing.assert_array_equal(predictor.groups, [0, 0, 1, 1, 1, 1])  # White 0, non-White 1 of utkface-cb
    coarse = TransferTarget(pair(FairFace(), FairFace().task("gender/race"), UTKFace()), None, {}, "f1")
    with pytest.raises(ConfigError, match=r"reads each image's group at inference, which utkface cannot give"):
        evaluate_transfer(coarse, fairface_test(), predictor, True, cb_data(), np.eye(2)[[0, 1, 1, 1]], SPEC)


def test_a_stored_run_lacks_an_evaluation_on_other_data_or_one_not_made():
    target = TransferTarget(pair(UTKFaceControlledBias(), cb_task(), FairFace()), None, {}, "f1")
    result, _ = evaluate_transfer(target, fairface_test(), Lookup([0] * 6), False, cb_data(), np.eye(2)[[0] * 4], SPEC)
    plan = TransferPlan((target,))
    record = fake_record(dataset="utkface-cb", task="gender/race")
    assert plan.lacking(record) == ["fairface"]
    assert plan.lacking(replace(record, transfer={"fairface": result})) == []
    assert plan.lacking(replace(record, transfer={"fairface": replace(result, data_fingerprint="f0")})) == ["fairface"]
    assert TransferPlan((replace(target, options={"strict": True}),)).lacking(
        replace(record, transfer={"fairface": result})
    )
    assert plan.lacking(fake_record(dataset="utkface-cb", task="gender/age")) == []  # not asked of that task
