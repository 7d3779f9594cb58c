"""Inception-v3 from a local file: both file formats load and give the network's features; wrong
files are refused with a clear message; parity with torchvision / pytorch-fid when installed."""

import pytest
import torch
from safetensors.torch import save_file

from diffvision.metrics import InceptionV3, load_inception
from diffvision.nets.unet import build_unet


def random_inception(variant, seed=0):
    torch.manual_seed(seed)
    net = InceptionV3(variant)
    for m in net.modules():  # non-trivial batch-norm statistics, so every tensor matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def file_state(net, classes, aux=False):
    """The state dict as the real files hold it: with ``fc`` (1008 FID / 1000 torchvision) and,
    for torchvision, the auxiliary classifier."""
    state = dict(net.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.randn(classes, 2048), torch.zeros(classes)
    if aux:
        state["AuxLogits.conv0.conv.weight"] = torch.randn(128, 768, 1, 1)
        state["AuxLogits.fc.weight"] = torch.randn(classes, 768)
    return state


@pytest.mark.parametrize(
    ("variant", "classes", "suffix"),
    [("fid", 1008, ".pth"), ("torchvision", 1000, ".pth"), ("fid", 1008, ".safetensors")],
)
def test_loads_both_formats_and_reproduces_features(tmp_path, variant, classes, suffix):
    net = random_inception(variant)
    path = tmp_path / f"inception{suffix}"
    state = file_state(net, classes, aux=variant == "torchvision")
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_inception(path)
    assert loaded.variant == variant
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        a, b = net(x), loaded(x)
    assert a.shape == (2, 2048)
    assert torch.equal(a, b)


def test_fid_and_torchvision_pooling_differ():
    # The FID network's pools differ from torchvision's; the same weights give other features.
    fid = random_inception("fid")
    tv = InceptionV3("torchvision")
    tv.load_state_dict(fid.state_dict())
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert (fid(x) - tv.eval()(x)).abs().max() > 1e-3


class _RunsCode:
    """Pickled, it makes unpickling call ``Path.touch`` on a path: code run by loading a file."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (type(self.path).touch, (self.path,))


def test_wrong_files_are_refused(tmp_path):
    unet = tmp_path / "unet.pth"
    torch.save(build_unet("tiny").state_dict(), unet)
    with pytest.raises(ValueError, match="not an Inception-v3 weights file"):
        load_inception(unet)
    partial = tmp_path / "partial.pth"
    state = random_inception("fid").state_dict()
    state.pop("Mixed_7c.branch_pool.conv.weight")
    torch.save(state, partial)
    with pytest.raises(ValueError, match=r"1 missing \(e.g. Mixed_7c.branch_pool.conv.weight"):
        load_inception(partial)
    code = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 2), code)  # a pickled module, not a state dict
    with pytest.raises(ValueError, match="tensors only"):
        load_inception(code)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="cannot read") as refused:
        load_inception(junk)
    assert "weights_only" not in str(refused.value)  # not torch's advice to load it unsafely
    # A file whose unpickling would run code (here: create a file) is refused without running it,
    # and the message names why: torch's specific line, not its preamble.
    evil = tmp_path / "evil.pth"
    torch.save({"w": _RunsCode(tmp_path / "ran")}, evil)
    with pytest.raises(ValueError, match=r"(?i)unsupported global") as refused:
        load_inception(evil)
    assert not (tmp_path / "ran").exists() and "weights_only" not in str(refused.value)
    with pytest.raises(ValueError, match="not found"):
        load_inception(tmp_path / "missing.pth")


def test_parity_with_torchvision():
    torchvision = pytest.importorskip("torchvision")
    ref = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=True).eval()
    ref.fc, ref.dropout = torch.nn.Identity(), torch.nn.Identity()
    ref.transform_input = False  # inputs already in [-1, 1]
    ours = InceptionV3("torchvision").eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if "AuxLogits" not in k})
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), rtol=1e-5, atol=1e-6)


def test_parity_with_pytorch_fid():
    fid = pytest.importorskip("pytorch_fid.inception")
    ref = fid._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=True)
    for name in ("5b", "5c", "5d"):
        cin, pool = {"5b": (192, 32), "5c": (256, 64), "5d": (288, 64)}[name]
        setattr(ref, f"Mixed_{name}", fid.FIDInceptionA(cin, pool_features=pool))
    for name, c7 in (("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)):
        setattr(ref, f"Mixed_{name}", fid.FIDInceptionC(768, channels_7x7=c7))
    ref.Mixed_7b, ref.Mixed_7c = fid.FIDInceptionE_1(1280), fid.FIDInceptionE_2(2048)
    ref.eval()
    ref.fc, ref.dropout = torch.nn.Identity(), torch.nn.Identity()
    ref.transform_input = False
    ours = InceptionV3("fid").eval()
    ours.load_state_dict({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")})
    x = torch.rand(2, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), rtol=1e-5, atol=1e-6)
