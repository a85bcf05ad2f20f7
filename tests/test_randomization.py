"""Model-parameter randomization: the core's order and values (goldens), both adapters setting exactly those
values and restoring every weight bit for bit, the same randomized network on both frameworks, and the cascade."""

import numpy as np
import pytest
from kits import make_kit

from xcam.errors import XcamError
from xcam.metrics import CascadeResult
from xcam.randomization import (
    ParamLayer,
    cascade_layers,
    cascade_rows,
    fan_in,
    random_parameters,
    truncated_normal,
)

LAYERS = [ParamLayer("conv1", ((4, 3, 3, 3), (4,))), ParamLayer("bn", ((4,), (4,))),
          ParamLayer("fc", ((2, 4), (2,)))]


# ---------------------------------------------------------------- core


def test_cascade_runs_from_the_output_down_and_cuts_at_top():
    assert [r.name for r in cascade_layers(LAYERS)] == ["fc", "bn", "conv1"]
    assert [r.name for r in cascade_layers(LAYERS, top=2)] == ["fc", "bn"]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(XcamError, match="top must be a positive number"):
            cascade_layers(LAYERS, top=bad)
    with pytest.raises(XcamError, match="no layer with trainable parameters"):
        cascade_layers([])


def test_fan_in_is_that_of_the_first_weight():
    assert fan_in(LAYERS[0].shapes) == 27 and fan_in(LAYERS[2].shapes) == 4 and fan_in(LAYERS[1].shapes) == 1


def test_random_parameters_are_a_truncated_lecun_normal_seeded_by_position():
    a = random_parameters(LAYERS[0], position=2, seed=7)
    assert [v.shape for v in a] == [(4, 3, 3, 3), (4,)] and all(v.dtype == np.float32 for v in a)
    # the same draw as numpy's Generator((seed, position)): standard normals, those beyond 2 redrawn, times sigma
    rng = np.random.default_rng([7, 2])
    z = rng.standard_normal((4, 3, 3, 3))
    if not (np.abs(z) > 2).any():
        np.testing.assert_array_equal(a[0], (z / np.sqrt(27)).astype(np.float32))
    np.testing.assert_array_equal(a[0], random_parameters(LAYERS[0], 2, 7)[0])  # reproducible
    assert not np.array_equal(a[0], random_parameters(LAYERS[0], 1, 7)[0])     # depends on the position
    assert not np.array_equal(a[0], random_parameters(LAYERS[0], 2, 8)[0])     # and on the seed
    big = truncated_normal(np.random.default_rng(0), (200_000,), 0.5)
    assert np.abs(big).max() <= 1.0  # cut at 2 sigma
    # the std of N(0, 1) truncated at +-2 is 0.8796 (closed form: sqrt(1 - 2*2*phi(2) / (2*Phi(2) - 1)))
    assert big.std() == pytest.approx(0.5 * 0.87962, rel=0.01)


def test_cascade_rows_are_nan_aware_means_per_layer():
    result = CascadeResult(("fc", "conv2"), np.array([[0.5, np.nan], [0.1, 0.3]]), np.array([[1.0, 0.0], [0.2, 0.4]]))
    rows = cascade_rows(result)
    assert rows[0] == {"step": 1, "layer": "fc", "spearman_mean": 0.5, "spearman_std": 0.0, "ssim_mean": 0.5,
                       "ssim_std": 0.5}
    assert rows[1]["spearman_mean"] == pytest.approx(0.2) and rows[1]["spearman_std"] == pytest.approx(0.1)


# ---------------------------------------------------------------- adapters


def weights(kit):
    """Every weight of the model as bytes (torch: parameters and buffers; Keras: every variable)."""
    if kit.name == "torch":
        return {k: v.detach().numpy().tobytes() for k, v in kit.model.state_dict().items()}
    return {v.path: np.asarray(v.numpy()).tobytes() for v in kit.model.weights}


def canonical(kit, name):
    """A layer's parameters in PyTorch's layout, read straight from the framework."""
    if kit.name == "torch":
        module = dict(kit.model.named_modules())[name]
        return [p.detach().numpy() for p in module.parameters(recurse=False)]
    layer = kit.model.get_layer(name)
    out = []
    for v in layer.trainable_weights:
        a = np.asarray(v.numpy())
        out.append(a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T if a.ndim == 2 else a)
    return out


def test_parameter_layers_list_the_same_layers_and_shapes_on_both_frameworks(fw):
    assert fw.module.parameter_layers(fw.model) == [ParamLayer("conv1", ((4, 3, 3, 3), (4,))),
                                                    ParamLayer("conv2", ((3, 4, 3, 3), (3,))),
                                                    ParamLayer("fc", ((2, 3), (2,)))]


def test_randomized_sets_the_drawn_values_and_restores_every_weight_bit_for_bit(fw):
    before = weights(fw)
    logits = fw.predict(fw.x_nchw)
    records = {r.name: r for r in fw.module.parameter_layers(fw.model)}
    conv1 = [a.copy() for a in canonical(fw, "conv1")]
    with fw.module.randomized(fw.model, ["fc", "conv2"], seed=3):
        for position, name in enumerate(["fc", "conv2"]):
            for got, want in zip(canonical(fw, name), random_parameters(records[name], position, 3)):
                np.testing.assert_array_equal(got, want)
        for got, kept in zip(canonical(fw, "conv1"), conv1):  # a layer not named is left alone
            np.testing.assert_array_equal(got, kept)
        assert np.abs(fw.predict(fw.x_nchw) - logits).max() > 1e-3
    assert weights(fw) == before
    np.testing.assert_array_equal(fw.predict(fw.x_nchw), logits)


def test_randomized_restores_after_an_error_inside_the_block(fw):
    before = weights(fw)
    with pytest.raises(RuntimeError, match="boom"):
        with fw.module.randomized(fw.model, ["fc", "conv2", "conv1"]):
            raise RuntimeError("boom")
    assert weights(fw) == before


def test_randomized_refuses_a_layer_without_parameters(fw):
    with pytest.raises(XcamError, match="cannot randomize 'act2': not a layer with trainable parameters"):
        with fw.module.randomized(fw.model, ["fc", "act2"]):
            pass


def test_torch_leaves_grads_and_modes_alone():
    torch = pytest.importorskip("torch")
    kit = make_kit("torch")
    kit.model.train()
    with kit.module.randomized(kit.model, ["fc"]):
        pass
    assert kit.model.training and all(p.grad is None for p in kit.model.parameters())
    assert torch.is_grad_enabled()


@pytest.mark.torch
@pytest.mark.tf
def test_a_ported_network_with_batchnorm_is_randomized_to_the_same_network():
    torch = pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from torch import nn

    import xcam_tf
    import xcam_torch
    from xcam.app.models.porting_keras import build
    from xcam.app.models.porting_torch import describe

    torch.manual_seed(0)
    tmodel = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 4, 3),
                           nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    with torch.no_grad():
        tmodel[1].running_mean.uniform_(-1, 1)
        tmodel[1].running_var.uniform_(0.5, 2)
    kmodel = build(describe(tmodel, (3, 8, 8)), (8, 8, 3))
    tl = xcam_torch.parameter_layers(tmodel)
    kl = xcam_tf.parameter_layers(kmodel)
    assert [r.shapes for r in tl] == [r.shapes for r in kl] and len(tl) == 4
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    tnames, knames = [r.name for r in tl[::-1]], [r.name for r in kl[::-1]]
    with xcam_torch.randomized(tmodel, tnames, seed=5), xcam_tf.randomized(kmodel, knames, seed=5):
        with torch.no_grad():
            t = tmodel(torch.from_numpy(x)).numpy()
        k = np.asarray(kmodel(x.transpose(0, 2, 3, 1), training=False))
        assert tmodel[1].running_mean.abs().max() > 0.1  # statistics are not parameters: left alone
    np.testing.assert_allclose(t, k, atol=1e-5)
    assert np.abs(t).max() > 1e-3


@pytest.mark.torch
@pytest.mark.tf
def test_the_cascade_agrees_across_frameworks_and_leaves_the_model_as_it_was():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from xcam.app.jobs.sanity import model_randomization, randomization_summary

    results = {}
    for name in ("torch", "tf"):
        kit = make_kit(name)
        before, original = weights(kit), kit.cam("conv2", "gradcam", targets=[0, 1])
        results[name] = model_randomization(kit.module, kit.model, kit.inputs, "conv2", "gradcam", [0, 1], seed=1,
                                            size=(16, 16))
        assert weights(kit) == before
        np.testing.assert_array_equal(kit.cam("conv2", "gradcam", targets=[0, 1]), original)
        given = model_randomization(kit.module, kit.model, kit.inputs, "conv2", "gradcam", [0, 1], seed=1,
                                    size=(16, 16), maps=kit.cam("conv2", "gradcam", targets=[0, 1], size=(16, 16)))
        np.testing.assert_array_equal(given.spearman, results[name].spearman)
        np.testing.assert_array_equal(given.ssim, results[name].ssim)
    t, k = results["torch"], results["tf"]
    assert t.layers == k.layers == ("fc", "conv2", "conv1")
    assert t.spearman.shape == (3, 2)
    np.testing.assert_allclose(t.spearman, k.spearman, atol=1e-4, equal_nan=True)
    np.testing.assert_allclose(t.ssim, k.ssim, atol=1e-4)
    assert np.nanmin(t.ssim) < 0.9  # randomizing changes the maps
    summary = randomization_summary(t)
    assert summary["rows"][2]["layer"] == "conv1" and summary["final_ssim"] == [float(v) for v in t.ssim[-1]]


def test_nested_one_layer_blocks_equal_one_block_of_the_cascade(fw):
    import contextlib

    before = weights(fw)
    with fw.module.randomized(fw.model, ["fc", "conv2", "conv1"], seed=4):
        together = fw.predict(fw.x_nchw)
    with contextlib.ExitStack() as stack:
        for k, name in enumerate(["fc", "conv2", "conv1"]):
            stack.enter_context(fw.module.randomized(fw.model, [name], seed=4, first_position=k))
        np.testing.assert_array_equal(fw.predict(fw.x_nchw), together)
    assert weights(fw) == before
