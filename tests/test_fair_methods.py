"""SHaSaM, clip-cluster, GroupDRO, JTT and FSCL: their pure steps by hand, and their wiring on synthfaces.

The submodular functions, greedy, MINE and the CMI losses are tested in
test_submodular.py; SupCon / FSCL losses in test_losses.py.
"""

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.data import Attribute, make_task_data
from fairfacebench.diagnostics import diagnose, draw_report, partition_report
from fairfacebench.methods.clip_cluster import (
    ClipCluster,
    ClipClusterNoResampling,
    attribute_prompts,
    cluster_accuracy,
    clustering_features,
    fit_clusters,
    resampling_probabilities,
    underperforming,
)
from fairfacebench.methods.common import projection_head, train_linear_probe
from fairfacebench.methods.fscl import FSCL
from fairfacebench.methods.groupdro import group_adjustment, group_losses, update_group_weights
from fairfacebench.methods.jtt import error_set, upsampling_probabilities
from fairfacebench.methods.shasam import (
    LEARN_LOSSES,
    MINING_HPARAMS,
    FeatureMemory,
    SHaSaM,
    SHaSaMNoMining,
    cmi_loss,
    learn_representation,
    select,
    summarise,
)
from fairfacebench.methods.submodular import anchor_sets, similarity_kernel
from fairfacebench.plugins import registry
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH
from fairfacebench.zeroshot import class_phrases, zero_shot_classifier

TINY_BUDGET = Budget("tiny", steps=6, batch_size=16)


# ----------------------------------------------------------------------------- groupdro


def test_group_losses_average_per_group_and_zero_for_absent_groups():
    per_sample = torch.tensor([1.0, 3.0, 2.0, 4.0])
    groups = torch.tensor([0, 0, 2, 2])
    assert group_losses(per_sample, groups, 4).tolist() == [2.0, 0.0, 3.0, 0.0]


def test_groupdro_weights_move_toward_the_worst_group():
    q = torch.full((4,), 0.25)
    losses = torch.tensor([0.2, 1.5, 0.4, 0.3])
    q1 = update_group_weights(q, losses, eta=0.5, adjustment=torch.zeros(4))
    # q_g ∝ exp(η L_g): by hand
    expected = torch.exp(0.5 * losses) / torch.exp(0.5 * losses).sum()
    assert torch.allclose(q1, expected) and math.isclose(float(q1.sum()), 1.0, rel_tol=1e-6)
    assert int(q1.argmax()) == 1 and q1[1] > 0.25 and (q1[[0, 2, 3]] < 0.25).all()
    for _ in range(200):
        q1 = update_group_weights(q1, losses, eta=0.5, adjustment=torch.zeros(4))
    assert q1[1] > 0.99


def test_group_adjustment_favours_small_groups_and_keeps_empty_groups_at_zero():
    adj = group_adjustment(np.array([100, 4, 0]), c=2.0)
    assert np.allclose(adj, [0.2, 1.0, 0.0])
    q = torch.tensor([0.5, 0.5, 0.0])
    q1 = update_group_weights(q, torch.zeros(3), eta=1.0, adjustment=torch.as_tensor(adj, dtype=torch.float32))
    assert q1[1] > q1[0] and q1[2] == 0


# ----------------------------------------------------------------------------- jtt


def test_jtt_upsamples_the_first_models_errors():
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 0, 1, 1])
    errors = error_set(scores, y)
    assert errors.tolist() == [False, True, True, False]
    probs = upsampling_probabilities(errors, 20.0)
    assert np.allclose(probs, np.array([1, 20, 20, 1]) / 42)


# ----------------------------------------------------------------------------- clip-cluster


def test_prompts_embed_every_value_of_every_sensitive_attribute_with_the_datasets_phrases():
    skin = Attribute("skin_tone", ("light", "dark"), (("a person with light skin",), ("a person with dark skin",)))
    race = Attribute("race", ("White", "Black"))  # no phrases: the generic "a {class} person"
    vlm = ToyBrightnessCLIP()
    vlm.WORDS = {**vlm.WORDS, "white": 0.9, "black": 0.2}
    text, names = attribute_prompts(vlm, (skin, race))
    assert names == ["skin_tone=light", "skin_tone=dark", "race=White", "race=Black"]
    expected = np.concatenate([zero_shot_classifier(vlm, class_phrases(a)) for a in (skin, race)])
    np.testing.assert_allclose(text, expected)
    np.testing.assert_allclose(text[0], vlm._embed(np.array([0.8]))[0], atol=1e-6)  # every template names "light"


def test_the_worst_cluster_is_upweighted():
    val_clusters = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
    correct = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 1], dtype=bool)
    acc = cluster_accuracy(val_clusters, correct, 4)
    assert np.allclose(acc[:3], [1.0, 0.25, 1.0]) and np.isnan(acc[3])
    weak = underperforming(acc, float(correct.mean()))
    assert weak.tolist() == [False, True, False, False]
    train_clusters = np.array([0, 1, 2, 3, 1])
    probs = resampling_probabilities(train_clusters, weak, 4.0)
    assert np.allclose(probs, np.array([1, 4, 1, 1, 4]) / 11)
    # class-balanced: cluster 1 keeps mass 8 but its one class-1 sample weighs as much as its three class-0 samples
    train_clusters, y = np.array([0, 1, 1, 1, 1]), np.array([0, 0, 0, 0, 1])
    probs = resampling_probabilities(train_clusters, weak, 4.0, y)
    assert np.allclose(probs, np.array([1, 4 * 4 / 6, 4 * 4 / 6, 4 * 4 / 6, 4 * 4 / 2]) / 17)


class ToyBrightnessCLIP:
    """A two-dimensional stand-in for CLIP that knows one concept: how light a face is.

    Images: the median luminance b ∈ [0, 1] of the central quarter of the image side,
    embedded as the unit vector (cos πb/2, sin πb/2).  Text: the words
    'light', 'medium', 'dark' mean luminance 0.8, 0.55, 0.3, embedded the
    same way.  It never sees labels; it only makes image and text agree on
    what 'light' means, as a real CLIP does.
    """

    name = "toy-brightness"
    info = {"kind": "test double"}
    WORDS = {"light": 0.8, "medium": 0.55, "dark": 0.3}

    @staticmethod
    def _embed(b: np.ndarray) -> np.ndarray:
        return np.stack([np.cos(np.pi * b / 2), np.sin(np.pi * b / 2)], axis=1).astype(np.float32)

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        h, w = images.shape[1:3]
        centre = images[:, 3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8].astype(np.float32) / 255
        luminance = centre @ np.array([0.299, 0.587, 0.114], np.float32)
        return self._embed(np.median(luminance.reshape(len(images), -1), axis=1))

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._embed(
            np.array([next(v for k, v in self.WORDS.items() if re.search(rf"\b{k}\b", t.lower())) for t in texts])
        )


@pytest.fixture(scope="module")
def synth_data():
    ds = registry().dataset("synthfaces")
    loaded = ds.load(None, 32, Path(os.environ["FAIRBENCH_CACHE"]), **TINY_SYNTH)
    return make_task_data(loaded, ds.task("smiling/skin_tone"))


def _ctx(data, method, vlm=None, **hparams):
    settings = FitSettings({**method.default_hparams(), **hparams}, 0, TINY_BUDGET)
    return FitContext(data, settings, BudgetMeter(TINY_BUDGET), vlm=vlm)


def test_clip_cluster_recovers_planted_groups_from_prompt_similarities(synth_data):
    ctx = _ctx(synth_data, ClipCluster, vlm=ToyBrightnessCLIP())
    train_f, val_f = clustering_features(ctx, None, 16, 0.5)
    assert train_f.shape == (len(synth_data.train), 3) and val_f.shape == (len(synth_data.val), 3)
    clusters = fit_clusters(train_f, ctx.n_groups, 0).labels_
    assert partition_report(clusters, synth_data.train.a, synth_data.group_names)["ami_with_true_groups"] > 0.3
    assert ctx.log.variant is None and "train.sensitive" not in ctx._touched


def test_clip_cluster_backbone_variant_recovers_planted_groups(synth_data):
    ctx = _ctx(synth_data, ClipCluster)
    train_f, _ = clustering_features(ctx, ctx.new_classifier(), 16, 0.5)
    clusters = fit_clusters(train_f, ctx.n_groups, 0).labels_
    assert (
        partition_report(clusters, synth_data.train.a, synth_data.group_names)["ami_with_true_groups"] > 0.05
    )  # random partitions: |AMI| < 0.01
    assert ctx.log.variant == "backbone-features"


def test_clip_cluster_fit_runs_both_models_in_one_budget_and_reports_ami(synth_data):
    ctx = _ctx(synth_data, ClipCluster, vlm=ToyBrightnessCLIP())
    predictor = ClipCluster().fit(ctx)
    assert predictor.predict(synth_data.val.images[:4]).shape == (4, 2)
    assert ctx.budget.steps_per_stage == {"first": 2, "final": 4}
    assert len(ctx.log.stages["clusters"]["underperforming"]) >= 1
    # the harness, not the method, compares the clusters with the true groups
    report = diagnose(ctx.log.evidence, synth_data)["clusters"]
    assert report["ami_with_true_groups"] > 0.3
    assert sum(sum(g.values()) for g in report["true_groups_per_part"].values()) == len(synth_data.train)
    assert sum(report["true_group_share_drawn"].values()) == pytest.approx(1, abs=1e-3)
    assert "train.sensitive" not in ctx._touched and not ClipCluster.label_use(ctx.hparams).sensitive


@pytest.mark.parametrize("balance", [False, True])
def test_clip_cluster_ablation_draws_uniformly_whatever_balance_classes_says(synth_data, balance):
    ctx = _ctx(synth_data, ClipClusterNoResampling, vlm=ToyBrightnessCLIP(), balance_classes=balance)
    ClipClusterNoResampling().fit(ctx)
    report = diagnose(ctx.log.evidence, synth_data)["clusters"]
    assert report["true_group_share_drawn"] == report["true_group_share_uniform"]
    assert ctx.log.stages["clusters"]["upsample"] == 1.0


def test_partition_and_draw_reports_by_hand():
    parts, groups = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 0, 1, 1, 0, 1])
    report = partition_report(parts, groups, ["light", "dark"])
    assert report["true_groups_per_part"] == {
        "0": {"light": 2, "dark": 0},
        "1": {"light": 1, "dark": 2},
        "2": {"light": 0, "dark": 1},
    }
    # part 1 drawn 4x as often as the rest: weights 1,1,4,4,4,1 of 15
    draw = draw_report(np.array([1, 1, 4, 4, 4, 1]) / 15, groups, ["light", "dark"])
    assert draw["true_group_share_uniform"] == {"light": 0.5, "dark": 0.5}
    assert draw["true_group_share_drawn"] == {"light": round(6 / 15, 4), "dark": round(9 / 15, 4)}


# ----------------------------------------------------------------------------- shasam


@pytest.mark.parametrize("name", LEARN_LOSSES)
def test_shasam_step_with_memory_decreases_and_leaves_the_memory_alone(name):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 8, generator=g)
    y, a = torch.arange(16) % 2, (torch.arange(16) // 2) % 2
    net = torch.nn.Linear(8, 6)
    memory = FeatureMemory(8)
    with torch.no_grad():
        memory.push(net(torch.randn(12, 8, generator=g)), torch.arange(12) % 2, (torch.arange(12) // 2) % 2)
    assert memory.items[0].shape == (8, 6) and not memory.items[0].requires_grad
    frozen = memory.items[0].clone()
    hp = {**SHaSaM.default_hparams(), "n_pos": 2, "n_neg": 2}
    learn = cmi_loss(name, hp["nu"])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    losses = []
    for _ in range(20):
        emb = net(x)
        bank, bank_y, bank_a = memory.bank(emb, y, a)
        kernel = similarity_kernel(bank, hp["temperature"])
        sets = anchor_sets(bank_y, bank_a, len(emb))
        A, P = select(kernel, sets, hp, mining=True)
        assert (A | P)[:, 16:].any()  # the memory is among the candidates
        loss = learn(kernel, sets.anchors, A, P)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert torch.equal(memory.items[0], frozen)


def test_feature_memory_keeps_the_last_items_and_is_off_at_size_zero():
    memory = FeatureMemory(3)
    for start in (0, 2):
        memory.push(torch.arange(start, start + 2.0)[:, None], torch.arange(2), torch.arange(2))
    assert memory.items[0].flatten().tolist() == [1.0, 2.0, 3.0]
    off = FeatureMemory(0)
    off.push(torch.ones(2, 1), torch.arange(2), torch.arange(2))
    assert off.items is None


def test_unknown_shasam_loss_names_the_choices():
    with pytest.raises(ValueError, match="fl_cmi, gc_cmi, logdet_cmi"):
        cmi_loss("triplet", 1.0)


def test_shasam_representation_stage_never_reads_the_classifier_head(synth_data):
    ctx = _ctx(synth_data, SHaSaM)
    model = ctx.new_classifier()
    model.heads["projection"] = projection_head(model.heads["target"].in_features)

    def refuse(*_):
        raise AssertionError("the representation stage read the classifier head")

    model.heads["target"].register_forward_pre_hook(refuse)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    records = learn_representation(ctx, model, 3, ctx.hparams, mining=True)
    after = model.state_dict()
    assert ctx.budget.steps_per_stage == {"representation": 3} and len(records) == 3
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("heads.target."))
    for part in ("backbone.", "heads.projection."):  # what the stage does train
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part))


@pytest.mark.parametrize("head", ["linear", "finetune"])
def test_shasam_classifier_stage_leaves_the_backbone_alone_in_linear_probe_mode(synth_data, head):
    ctx = _ctx(synth_data, SHaSaM, head=head)
    target_calls, at_stage_start, models = [], {}, []
    new_classifier = ctx.new_classifier

    def instrumented():
        model = new_classifier()
        model.heads["target"].register_forward_pre_hook(lambda *_: target_calls.append(ctx.budget.stage))

        def snapshot(module, _):  # the backbone as each stage first sees it
            at_stage_start.setdefault(ctx.budget.stage, {k: v.clone() for k, v in module.state_dict().items()})

        model.backbone.register_forward_pre_hook(snapshot)
        models.append(model)
        return model

    ctx.new_classifier = instrumented
    SHaSaM().fit(ctx)
    classifier_stage = "probe" if head == "linear" else "classifier"
    assert ctx.budget.steps_per_stage == {"representation": 4, classifier_stage: 2}
    assert set(target_calls) <= {"classifier"}  # never in the representation stage (the probe has its own head)
    final = models[0].backbone.state_dict()
    start = at_stage_start[classifier_stage]
    assert any(not torch.equal(at_stage_start["representation"][k], start[k]) for k in start)
    unchanged = all(torch.equal(start[k], final[k]) for k in start)  # weights and BN statistics
    assert unchanged if head == "linear" else not unchanged
    stage = ctx.log.stages["representation"]
    assert stage["positives_per_set"] <= SHaSaM.default_hparams()["n_pos"] and stage["mining"] is True
    assert {"cmi_loss_first", "cmi_loss_last", "active_terms_first", "mine_ms_per_step"} <= set(stage)


def test_shasam_without_mining_learns_on_every_candidate(synth_data):
    assert SHaSaMNoMining.ablation_of == "shasam" and registry().method("shasam:no-mining") is SHaSaMNoMining
    assert SHaSaM.version == 4 and not set(MINING_HPARAMS) & set(SHaSaMNoMining.space)
    numbers = {}
    for method, hparams in ((SHaSaMNoMining, {}), (SHaSaM, {"n_pos": 2, "n_neg": 2})):
        ctx = _ctx(synth_data, method, **hparams)
        model = ctx.new_classifier()
        model.heads["projection"] = projection_head(model.heads["target"].in_features)
        numbers[method.name] = summarise(learn_representation(ctx, model, 2, ctx.hparams, method.mining))
    ablation, mined = numbers["shasam:no-mining"], numbers["shasam"]
    assert ablation["positives_per_set"] == ablation["positive_candidates_per_set"] > 2
    assert ablation["negatives_per_set"] == ablation["negative_candidates_per_set"] > 2
    assert mined["positives_per_set"] <= 2 and mined["negatives_per_set"] <= 2


# ----------------------------------------------------------------------------- fscl


def test_fscl_linear_probe_trains_the_head_only(synth_data):
    ctx = _ctx(synth_data, FSCL)
    model = ctx.new_classifier()
    backbone = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head = model.heads["target"].weight.detach().clone()
    probe = train_linear_probe(ctx, model, ctx.budget.remaining, 1e-2)
    assert ctx.budget.steps_per_stage == {"probe": TINY_BUDGET.steps}
    assert all(torch.equal(v, probe.backbone.state_dict()[k]) for k, v in backbone.items())  # incl. BN statistics
    assert torch.equal(head, model.heads["target"].weight) and not torch.equal(head, probe.heads["target"].weight)


def test_sample_truth_reads_pool_truth_for_pool_rows_and_training_labels_for_training_rows():
    from types import SimpleNamespace

    from fairfacebench.data import Attribute
    from fairfacebench.diagnostics import pseudo_label_report, sample_truth

    data = SimpleNamespace(
        task=SimpleNamespace(target="smiling", sensitive=("tone",)),
        sensitive_attributes=(Attribute("tone", ("light", "dark")),),
        group_names=["light", "dark"],
        train=SimpleNamespace(y=np.array([1, 0, 1]), a=np.array([0, 1, 1])),
    )
    hidden = {"smiling": np.array([0, 1, -1]), "tone": np.array([1, 0, -1])}
    ev = {"pool_rows": np.array([0, 1, 2, -1, -1, -1]), "train_rows": np.array([-1, -1, -1, 2, 0, -1])}
    truth, group = sample_truth(ev, hidden, data)
    # pool rows 0 and 1 from the hidden truth, pool row 2 unknown (-1), training rows 2 and 0, the last sample unknown
    assert truth.tolist() == [0, 1, -1, 1, 1, -1] and group.tolist() == [1, 0, -1, 1, 0, -1]
    report = pseudo_label_report((truth, group), np.array([0, 0, 0, 1, 0, 0]), np.ones(6, bool), data)
    assert report["with_truth"] == 4 and report["accuracy_all"] == 0.5  # right: samples 0 and 3
    assert report["accuracy_all_per_group"] == {"light": 0.0, "dark": 1.0}
    assert sample_truth({"pool_rows": np.array([0, 1])}, {}, data) is None  # no truth anywhere
