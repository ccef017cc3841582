"""The self-supervised family: faiss curation, pseudo-labels, Meta-Weight-Net, and simclr / ssl-pipeline end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.cli import main
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.diagnostics import dedup_report
from fairfacebench.fitting import embedder, fit_under_meter
from fairfacebench.methods.curation import build_index, deduplicate, domain_similarity, select_nearest
from fairfacebench.methods.losses import supcon_loss, supcon_per_sample
from fairfacebench.methods.ssl_pipeline import (
    Encoder,
    MetaWeightNet,
    SSLPipeline,
    balanced_meta_set,
    meta_weighted_loss,
    pseudo_labels,
    retrieve_target_domain,
    supcon_steps,
    tail_parameters,
)
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH
from fairfacebench.testing import single_thread, tiny_task

# A small pool keeps the end-to-end runs to seconds; it still holds planted duplicates and non-faces.
SMALL_POOL = {**TINY_SYNTH, "n_pool": 600}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def planted(n_distinct: int, n_dup: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random distinct rows plus near-copies of some (cosine ≈ 0.995), shuffled; returns rows and duplicate_of."""
    rng = np.random.default_rng(seed)
    base = unit(rng.normal(size=(n_distinct, dim)))
    src = rng.choice(n_distinct, n_dup, replace=False)
    dups = unit(base[src] + 0.1 / np.sqrt(dim) * rng.normal(size=(n_dup, dim)))
    order = rng.permutation(n_distinct + n_dup)
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    duplicate_of = np.concatenate([np.full(n_distinct, -1), pos[src]])[order]
    return np.concatenate([base, dups])[order], duplicate_of


@pytest.mark.parametrize("flat_max", [100_000, 500], ids=["flat", "ivf"])
def test_dedup_removes_planted_near_duplicates_and_keeps_distinct_images(flat_max):
    x, duplicate_of = planted(1500, 120, 64)
    result = deduplicate(x, threshold=0.95, flat_max=flat_max)
    assert result.index_kind.startswith("flat" if flat_max > len(x) else "ivf")
    assert result.n_removed == 120
    report = dedup_report(result.keep, {"duplicate_of": duplicate_of})
    assert report == {"planted_pairs": 120, "planted_pairs_resolved": 120, "distinct_images_removed": 0}
    # every removed row points at its kept partner
    removed = np.flatnonzero(~result.keep)
    assert result.keep[result.representative[removed]].all()


def test_dedup_threshold_is_a_cosine_threshold():
    x, _ = planted(200, 20, 32)
    assert deduplicate(x, threshold=0.999).n_removed == 0  # copies sit at ≈ 0.995
    assert deduplicate(x, threshold=0.98).n_removed == 20


def test_retrieval_ranks_in_domain_images_above_off_domain_ones():
    rng = np.random.default_rng(1)
    centre = unit(rng.normal(size=(1, 48)))
    target = unit(centre + 0.5 / np.sqrt(48) * rng.normal(size=(200, 48)))
    in_domain = unit(centre + 0.5 / np.sqrt(48) * rng.normal(size=(150, 48)))
    off_domain = unit(rng.normal(size=(350, 48)))
    pool = np.concatenate([off_domain, in_domain])
    scores, kind = domain_similarity(pool, target, k=10)
    assert kind == "flat"
    assert scores[350:].min() > scores[:350].max()
    assert set(select_nearest(scores, 150)) == set(range(350, 500))


def test_retrieval_never_fills_a_group_quota_with_off_domain_images():
    rng = np.random.default_rng(3)
    centre = unit(rng.normal(size=(1, 48)))
    target = unit(centre + 0.5 / np.sqrt(48) * rng.normal(size=(300, 48)))
    pool = np.concatenate(
        [unit(centre + 0.5 / np.sqrt(48) * rng.normal(size=(200, 48))), unit(rng.normal(size=(100, 48)))]
    )
    groups = np.r_[
        np.zeros(180, int), np.ones(20, int), np.ones(100, int)
    ]  # the minority group shares its code with the off-domain rows
    pick, numbers = retrieve_target_domain(pool, target, groups, k=10, quantile=0.05, fraction=0.5)
    assert pick.max() < 200 and numbers["kept"] == len(pick) == 150 and 180 <= numbers["in_domain"] < 200
    assert (groups[pick] == 1).sum() >= 17  # the minority's in-domain rows, all of them, and nothing off-domain


def test_retrieval_balances_inferred_groups():
    scores = np.linspace(1, 0, 100)
    groups = np.r_[np.zeros(80, int), np.ones(20, int)]  # group 1 ranks last
    picked = select_nearest(scores, 30, groups)
    assert np.bincount(groups[picked]).tolist() == [15, 15]
    assert np.bincount(groups[select_nearest(scores, 60, groups)]).tolist() == [
        40,
        20,
    ]  # group 1 exhausted, rest refilled
    assert select_nearest(scores, 30).tolist() == list(range(30))


def test_ivf_index_keeps_recall_on_clustered_data():
    rng = np.random.default_rng(2)
    centres = unit(rng.normal(size=(50, 32)))
    x = unit(centres[rng.integers(0, 50, 6000)] + 0.3 * rng.normal(size=(6000, 32)) / np.sqrt(32) * 3)
    exact = build_index(x)
    approx = build_index(x, flat_max=1000)
    assert approx.kind.startswith("ivf")
    _, truth = exact.search(x[:200], 10)
    _, found = approx.search(x[:200], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, found)])
    assert recall > 0.8


def test_confidence_filter_keeps_the_most_confident_share_of_each_pseudo_class():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    label, keep = pseudo_labels(probs, 0.5)
    assert label.tolist() == [0, 0, 0, 0, 1, 1]
    assert keep.tolist() == [True, False, False, True, True, False]
    # per (pseudo-class, group): the least confident group of class 0 keeps its share instead of none
    label, keep = pseudo_labels(probs, 0.5, groups=np.array([0, 0, 1, 1, 0, 0]))
    assert keep.tolist() == [True, False, False, True, True, False]
    label, keep = pseudo_labels(probs, 0.5, groups=np.array([0, 0, 0, 1, 0, 1]))
    assert keep.tolist() == [True, True, False, True, True, True]  # round(1.5) = 2 of three; singletons stay


def test_balanced_meta_set_draws_per_cell():
    y = np.r_[np.zeros(50, int), np.ones(50, int)]
    a = np.tile([0, 1, 2, 2, 2], 20)
    idx = balanced_meta_set(y, a, 4, np.random.default_rng(0))
    cells = a[idx] * 2 + y[idx]
    assert np.bincount(cells).tolist() == [4] * 6


def test_meta_weighted_supcon_gives_wrong_pseudo_labels_lower_weights():
    """The real Meta-Weight-Net step of ssl-pipeline on a toy encoder: two Gaussian classes, 30% of the
    pseudo-labels wrong, a clean balanced meta set of 32; after a SupCon warm-up, 300 meta-weighted steps."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    n, d = 600, 8
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, d, generator=g) + (2 * y[:, None] - 1) * 3.0 / d**0.5
    wrong = torch.rand(n, generator=g) < 0.3
    pseudo = torch.where(wrong, 1 - y, y)
    meta_y = torch.arange(2).repeat(16)
    meta_x = torch.randn(32, d, generator=g) + (2 * meta_y[:, None] - 1) * 3.0 / d**0.5
    encoder = Encoder(torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.ReLU()), torch.nn.Linear(32, 16))
    wnet = MetaWeightNet()
    wnet_opt = torch.optim.Adam(wnet.parameters(), lr=3e-3, weight_decay=1e-4)
    opt = torch.optim.SGD(encoder.parameters(), lr=0.05, momentum=0.9)
    moved = tail_parameters(encoder, "all")

    def views(v):
        return torch.cat([v + 0.1 * torch.randn(v.shape, generator=g), v + 0.1 * torch.randn(v.shape, generator=g)])

    with single_thread():  # tiny tensors: threads only add scheduling cost on a shared CPU
        for step in range(400):
            idx = torch.randint(0, n, (64,), generator=g)
            if step < 100:
                z = encoder(views(x[idx]))
                loss = supcon_loss(torch.stack(z.chunk(2), dim=1), pseudo[idx], temperature=0.1)
            else:
                loss, _, _ = meta_weighted_loss(
                    encoder,
                    wnet,
                    wnet_opt,
                    lambda o: o.step(),
                    views(x[idx]),
                    pseudo[idx],
                    views(meta_x),
                    meta_y,
                    0.1,
                    1.0,
                    moved,
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            z = encoder(views(x))
            weights = wnet(supcon_per_sample(torch.stack(z.chunk(2), dim=1), pseudo, temperature=0.1))
    ratio = float(weights[wrong].mean() / weights[~wrong].mean())
    assert ratio < 0.5, ratio  # measured 0.13: wrong pseudo-labels weigh far less than right ones


def test_the_virtual_step_moves_only_the_tail_and_the_meta_loss_reaches_only_the_weight_net():
    torch.manual_seed(0)
    encoder = Encoder(
        torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8)), torch.nn.Linear(8, 4)
    )
    moved = tail_parameters(encoder, "tail")
    assert moved[:2] == ["projector.weight", "projector.bias"] and all(n.startswith("backbone.2.") for n in moved[2:])
    assert tail_parameters(encoder, "all") == [n for n, _ in encoder.named_parameters()]
    wnet = MetaWeightNet()
    before = [p.detach().clone() for p in wnet.parameters()]
    stepped = []
    x, y = torch.randn(16, 4), torch.randint(0, 2, (8,))
    loss, w, _ = meta_weighted_loss(
        encoder,
        wnet,
        torch.optim.SGD(wnet.parameters(), lr=1.0),
        stepped.append,
        x,
        y,
        torch.randn(12, 4),
        torch.randint(0, 2, (6,)),
        0.1,
        1.0,
        moved,
    )
    assert len(stepped) == 1 and w.shape == (8,) and float(w.sum()) == pytest.approx(1.0)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in wnet.parameters())  # the meta gradient
    assert all(torch.equal(a, b) for a, b in zip(before, wnet.parameters()))  # stepped only through inner_step
    loss.backward()
    assert all(p.grad is not None for p in encoder.parameters()) and not w.requires_grad


def _run(tmp_path, methods: str, *extra: str) -> dict[str, dict]:
    out = tmp_path / "runs"
    options = [f"--dataset-option={k}={v}" for k, v in SMALL_POOL.items()]
    code = main(
        [
            "run",
            "--methods",
            methods,
            "--datasets",
            "synthfaces",
            "--budget",
            "smoke",
            "--bootstrap",
            "0",
            "--out",
            str(out),
            *options,
            *extra,
        ]
    )
    records = {r["spec"]["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*/record.json"))}
    assert code == 0, {m: r.get("error") for m, r in records.items()}
    return records


def test_simclr_and_ssl_pipeline_run_on_synthfaces_and_report_every_stage(tmp_path):
    records = _run(tmp_path, "simclr,ssl-pipeline")
    ssl, simclr = records["ssl-pipeline"], records["simclr"]
    for rec in (ssl, simclr):
        assert rec["status"] == "ok" and rec["budget_report"]["steps"] == 12
    assert ssl["spec"]["vlm"] == "mini-clip" and ssl["vlm"]["encoder"] == "mini-clip" and ssl["variant"] is None
    assert simclr["spec"]["vlm"] == "mini-clip" and simclr["vlm"] is None  # the comparison's VLM, not loaded by simclr
    stages = ssl["stages"]
    assert list(stages) == ["1-embed", "2-dedup", "3-retrieve", "4-pseudo-labels", "5-meta-weighted-supcon", "6-head"]
    assert stages["1-embed"]["pool"] == 600 and stages["1-embed"]["encoder"] == "mini-clip:0"
    dedup, truth = stages["2-dedup"], ssl["diagnostics"]
    removed = dedup["thumbnail_removed"] + dedup["vlm_removed"]
    assert removed == dedup["before"] - dedup["after"] and truth["2-dedup"]["planted_pairs"] == 60
    assert truth["2-dedup"]["planted_pairs_resolved"] >= 54 and truth["2-dedup"]["distinct_images_removed"] <= 12, truth
    retrieve = stages["3-retrieve"]
    assert (
        retrieve["kept"] <= round(0.6 * dedup["after"])
        and sum(retrieve["per_inferred_group"].values()) == retrieve["kept"]
    )
    assert truth["3-retrieve"]["off_domain_kept"] <= 0.1 * truth["3-retrieve"]["off_domain_in_pool"], truth
    assert sum(truth["3-retrieve"]["per_true_group_kept"].values()) <= retrieve["kept"]
    pseudo = truth["4-pseudo-labels"]
    assert pseudo["accuracy_all"] > 0.55 and set(pseudo["accuracy_all_per_group"]) == {"light", "medium", "dark"}, (
        pseudo
    )
    kept = pseudo["kept_confident_per_true_group"]
    assert set(kept) == {"light", "medium", "dark"} and min(kept.values()) > 0, kept  # no group dropped wholesale
    weights = truth["5-meta-weighted-supcon"]
    assert set(weights) == {
        "weight_mean_pseudo_label_right",
        "weight_mean_pseudo_label_wrong",
        "weight_mean_per_true_group",
    }
    assert set(weights["weight_mean_per_true_group"]) == {"light", "medium", "dark"}
    curve = stages["5-meta-weighted-supcon"]["weight_function"]
    assert list(curve) == ["q10", "q50", "q90"] and curve["q10"]["loss"] <= curve["q50"]["loss"] <= curve["q90"]["loss"]
    assert all(0.0 < point["weight"] < 1.0 for point in curve.values())
    assert ssl["budget_report"]["steps_per_stage"] == {"5-meta-weighted-supcon": 8, "6-head": 4}
    assert ssl["labels_touched"] == ["pool", "val.sensitive", "val.target", "vlm"]
    assert simclr["stages"]["pretrain-data"]["pool_images"] == 600
    assert simclr["budget_report"]["steps_per_stage"] == {"nt-xent": 6, "probe-finetune": 6}


def test_ssl_pipeline_without_vlm_runs_as_the_named_variant(tmp_path):
    records = _run(tmp_path, "ssl-pipeline", "--vlm", "none")
    rec = records["ssl-pipeline"]
    assert rec["variant"] == "prototype-pseudo-labels" and rec["spec"]["vlm"] == "none" and rec["vlm"] is None
    assert rec["stages"]["1-embed"]["encoder"].startswith("backbone:")
    assert rec["stages"]["3-retrieve"]["group_inference"].startswith("k-means")
    assert rec["stages"]["4-pseudo-labels"]["rule"] == "class prototypes of the meta set"
    board = (tmp_path / "runs" / "leaderboard.md").read_text()
    assert "ssl-pipeline [prototype-pseudo-labels]" in board and "y:val, a:val" in board


def test_ssl_pipeline_passes_the_conformance_kit_with_the_mini_clip():
    """Budget, determinism, no test-label reads and declared label use, on the zero-shot path (not the fallback)."""
    import os
    from pathlib import Path

    from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, load_or_train
    from fairfacebench.testing import check_method

    report = check_method(SSLPipeline, vlm=load_or_train(MiniClipConfig(), Path(os.environ["FAIRBENCH_CACHE"])))
    assert not report.failures and report.steps == 12, str(report)


def test_ssl_pipeline_curating_from_the_training_images_is_judged_against_their_labels(tmp_path):
    rec = _run(tmp_path, "ssl-pipeline", "--pool", "none")["ssl-pipeline"]
    assert rec["stages"]["1-embed"]["pool_source"].startswith("training images")
    pseudo = rec["diagnostics"]["4-pseudo-labels"]
    assert pseudo["with_truth"] == rec["stages"]["4-pseudo-labels"]["labelled"] > 0  # every curated image is known
    assert 0.0 <= pseudo["accuracy_all"] <= 1.0
    assert set(pseudo["kept_all_per_true_group"]) == {"light", "medium", "dark"}
    assert rec["diagnostics"]["5-meta-weighted-supcon"]["weight_mean_pseudo_label_right"] is not None


class ImageOnlyEncoder:
    """An encoder with an image tower only (like the face descriptor): a fixed random projection of the pixels."""

    name = "image-only"
    info = {"id": "image-only", "text_tower": False}
    logit_scale = 100.0

    def encode_images(self, images):
        x = images.reshape(len(images), -1).astype(np.float32) / 255
        feats = (x - x.mean(1, keepdims=True)) @ np.random.default_rng(0).standard_normal((x.shape[1], 16))
        return (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(np.float32)

    def encode_text(self, texts):
        raise AssertionError("an image-only encoder has no text tower: the method must not ask for prompts")


def test_with_an_image_only_encoder_ssl_pipeline_uses_prototypes_and_kmeans_and_names_its_variant(tmp_path):
    data = tiny_task(needs_pool=True)
    budget = Budget("t", steps=6, batch_size=16)
    settings = FitSettings(SSLPipeline.default_hparams(), 0, budget, weights="none")
    meter = BudgetMeter(budget, forward_limit=10**6)
    ctx = FitContext(data, settings, meter, vlm=ImageOnlyEncoder(), embed=embedder(None))
    SSLPipeline().fit(ctx)
    assert ctx.log.variant == "image-embeddings"
    assert ctx.log.stages["4-pseudo-labels"]["rule"] == "class prototypes of the meta set"
    assert ctx.log.stages["3-retrieve"]["group_inference"].startswith("k-means")
    assert ctx.log.stages["1-embed"]["encoder"] == "image-only" and ctx.log.stages["1-embed"]["dim"] == 16
    assert meter.forward_per_stage["4-pseudo-labels"]["vlm"] > 0  # the meta set embedded by the encoder, charged


def test_supcon_steps_take_the_share_where_it_fits_and_stop_where_the_forward_samples_would_run_out():
    # 0.7 x 1200 = 840 steps of 192 samples (64 x 2 views + 32 x 2 meta views) fit: (178240 - 9000) // 192 = 881
    assert supcon_steps(0.7, 1200, 178240, per_step=192, reserve=9000) == 840
    # 0.74 x 1200 = 888 do not: 881 steps leave stage 6 its 9000 samples (881 x 192 = 169152 <= 169240)
    assert supcon_steps(0.74, 1200, 178240, per_step=192, reserve=9000) == 881
    assert supcon_steps(0.74, 1200, None, per_step=192, reserve=9000) == 888  # no forward limit: the share
    assert supcon_steps(0.5, 100, 500, per_step=192, reserve=9000) == 0  # nothing left after the reserve


def test_a_large_meta_batch_and_share_from_the_space_fit_the_forward_budget_instead_of_failing_at_the_head():
    """Board v2's search drew meta_batch 64, supcon_frac 0.74 and confident_fraction 0.89 (trial 1): the meta
    batches overran the forward samples and the run failed at stage 6; now stage 5 stops where they run out."""
    hparams = {
        **SSLPipeline.default_hparams(),
        "meta_per_cell": 16,
        "meta_batch": 64,
        "supcon_frac": 0.85,
        "confident_fraction": 0.9,
    }
    budget = Budget("t", steps=40, batch_size=8)
    with single_thread():
        fitted = fit_under_meter(SSLPipeline, tiny_task(needs_pool=False), FitSettings(hparams, 0, budget))
    report = fitted.budget_report
    supcon = report["steps_per_stage"]["5-meta-weighted-supcon"]
    assert 0 < supcon < round(0.85 * 40), report["steps_per_stage"]  # fewer than the share: the forward bound held
    assert report["steps_per_stage"]["6-head"] == 40 - supcon
    assert report["forward_samples"] <= report["forward_limit"]


def test_the_bound_gives_every_committed_finished_ssl_pipeline_run_the_stage_5_steps_it_took():
    """The evidence for `SSLPipeline.same_results_as`: on every finished run of the committed stores (the ablations
    included) the forward bound does not bind, so the code with it computes what the code before it computed."""
    stores = Path(__file__).resolve().parents[1] / "stores"
    checked = 0
    for path in sorted(stores.glob("*/*/record.json")):
        record = json.loads(path.read_text())
        spec = record["spec"]
        if not spec["method"].startswith("ssl-pipeline") or record["status"] != "ok":
            continue
        report, hp, batch = record["budget_report"], spec["hparams"], spec["budget"]["batch_size"]
        steps, forwards = report["steps_per_stage"], report["forward_samples_per_stage"]
        stage = next(name for name in steps if name.startswith("5-"))
        before = sum(n for name, counts in forwards.items() if name[0] in "1234" for n in counts.values())
        task = record["task_info"]  # the meta set: meta_per_cell images of every (class, group) cell
        meta_set = hp["meta_per_cell"] * len(task["target_classes"]) * len(task["group_names"])
        meta_batch = 0 if spec["method"].endswith("no-meta-weights") else min(hp["meta_batch"], meta_set)
        planned = supcon_steps(
            hp["supcon_frac"],
            spec["budget"]["steps"],
            report["forward_limit"] - before,
            per_step=2 * batch + 2 * meta_batch,
            reserve=sum(forwards["6-head"].values()),
        )
        assert planned == steps[stage], (path, planned, steps)
        assert sum(forwards[stage].values()) == steps[stage] * (2 * batch + 2 * meta_batch), path  # the cost is exact
        checked += 1
    assert checked >= 68
