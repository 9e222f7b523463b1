"""The nets are the architectures their configs name (docs/MODELS.md, "The architectures")."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cis490 import models  # noqa: E402
from cis490.models import configs  # noqa: E402


def _layer_outputs(net, x, kind):
    """Output shapes of every ``kind`` module in forward order."""
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape)))
             for m in net.modules() if isinstance(m, kind)]
    net.eval()
    with torch.no_grad():
        out = net(x)
    for h in hooks:
        h.remove()
    return shapes, out


def test_fcn_layers_are_wang_et_al_by_default():
    m = models.create("cnn", n_classes=3, n_channels=4, n_steps=50)
    cfg = m.config
    assert (cfg.arch, cfg.filters, cfg.kernels, cfg.dropout) == ("fcn", (128, 256, 128), (8, 5, 3), 0.0)
    net = m._build()
    convs = [c for c in net.modules() if isinstance(c, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (8, 128, 8), (128, 256, 5), (256, 128, 3)]  # 4 channels + 4 masks in
    assert [b.num_features for b in net.modules() if isinstance(b, nn.BatchNorm1d)] == [128, 256, 128]
    assert sum(isinstance(b, nn.Linear) for b in net.modules()) == 1
    assert (net.head.in_features, net.head.out_features) == (128, 3)
    shapes, out = _layer_outputs(net, torch.zeros(2, 8, 50), nn.BatchNorm1d)
    assert shapes == [(2, 128, 50), (2, 256, 50), (2, 128, 50)]  # "same" padding, even kernel too
    assert out.shape == (2, 3)


def test_fcn_layer_sizes_follow_the_config():
    m = models.create("cnn", n_classes=2, n_channels=1, n_steps=9, filters=[16, 32], kernels=[7, 4])
    convs = [c for c in m._build().modules() if isinstance(c, nn.Conv1d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [(2, 16, 7), (16, 32, 4)]
    with pytest.raises(configs.HyperError, match="'kernels'"):
        configs.validate_hyper("cnn", {"filters": [16, 32], "kernels": [3]})
    with pytest.raises(configs.HyperError, match="'arch'"):
        configs.validate_hyper("cnn", {"arch": "vgg"})


def test_resnet_blocks_are_wang_et_al_with_their_widths():
    m = models.create("cnn", n_classes=2, n_channels=3, n_steps=40, arch="resnet",
                      filters=[64, 128, 128])
    net = m._build()
    blocks = list(net.blocks)
    assert len(blocks) == 3
    for block, (c_in, c_out) in zip(blocks, [(6, 64), (64, 128), (128, 128)]):
        convs = [layer.conv for layer in block.layers]
        assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
            (c_in, c_out, 8), (c_out, c_out, 5), (c_out, c_out, 3)]
        if c_in != c_out:  # 1x1 conv + BN shortcut where the width changes, else BN
            assert block.shortcut.conv.kernel_size == (1,) and block.shortcut.conv.out_channels == c_out
        else:
            assert isinstance(block.shortcut, nn.BatchNorm1d)
    assert net.head.in_features == 128
    assert net(torch.zeros(2, 6, 40)).shape == (2, 2)


def test_tst_transformer_defaults():
    m = models.create("transformer", n_classes=4, n_channels=3, n_steps=20)
    c = m.config
    assert (c.d_model, c.n_heads, c.n_layers, c.ff_dim, c.dropout, c.norm, c.pool) == (
        64, 8, 3, 256, 0.1, "batch", "flatten")
    net = m._build()
    assert net.proj.in_features == 6 and net.pos.shape == (1, 20, 64)
    assert len(net.layers) == 3
    assert all(isinstance(layer.norm1.bn, nn.BatchNorm1d) for layer in net.layers)
    assert net.layers[0].attn.num_heads == 8 and net.layers[0].ff1.out_features == 256
    assert net.head.in_features == 20 * 64  # all steps' outputs, concatenated
    mean = models.create("transformer", n_classes=4, n_channels=3, n_steps=20, norm="layer",
                         pool="mean")._build()
    assert isinstance(mean.layers[0].norm1, nn.LayerNorm) and mean.head.in_features == 64
    for net_ in (net, mean):
        assert net_(torch.zeros(5, 6, 20)).shape == (5, 4)


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_recurrent_defaults_are_bidirectional_with_a_mean_and_last_head(name):
    m = models.create(name, n_classes=3, n_channels=2, n_steps=15)
    assert (m.config.hidden, m.config.n_layers, m.config.bidirectional) == (64, 1, True)
    net = m._build()
    assert net.rnn.bidirectional and net.rnn.input_size == 4
    assert net.head.in_features == 2 * 2 * 64  # (mean, last) x (forward, backward)
    x = torch.randn(2, 4, 15)
    net.eval()
    with torch.no_grad():
        out, _ = net.rnn(x.transpose(1, 2))
        full = net(x)
        # the backward direction's last state is the one after the first step
        want = net.head(torch.cat([out.mean(1), out[:, -1, :64], out[:, 0, 64:]], dim=1))
    assert torch.allclose(full, want)


def test_batchnorm_statistics_are_checkpointed_and_used_in_eval(tmp_path):
    from tests.models.models_helpers import FAST_HYPER, N_CHANNELS, N_CLASSES, N_STEPS, task_for

    Xtr, ytr, Xva, yva = task_for("cnn", n_train=96, n_val=32)
    m = models.create("cnn", n_classes=N_CLASSES, n_channels=N_CHANNELS, n_steps=N_STEPS,
                      **{**FAST_HYPER["cnn"], "epochs": 2})
    m.fit(Xtr, ytr, Xva, yva, seed=0)
    state = m.net.state_dict()
    stats = [k for k in state if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) == 3 * 2  # per BatchNorm: mean, var, count
    assert not torch.equal(state["blocks.0.bn.running_mean"], torch.zeros(16))  # trained stats
    path = m.save(tmp_path)
    loaded = models.load(path)
    assert all(torch.equal(loaded.net.state_dict()[k], state[k]) for k in stats)
    assert not loaded.net.training
    # eval mode: a row's prediction does not depend on the rows predicted with it
    assert np.array_equal(m.predict_proba(Xva[:3]), m.predict_proba(Xva)[:3])
    assert np.array_equal(loaded.predict_proba(Xva), m.predict_proba(Xva))
    meta = json.loads(path.read_text())
    assert meta["fit"]["budget"]["epochs"] == 2 and meta["config"]["filters"] == [16, 16]
