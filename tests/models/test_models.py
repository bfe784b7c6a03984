import pytest
import torch

from facerec.errors import ConfigError
from facerec.models import BACKBONES, build_backbone


@pytest.mark.parametrize(
    ("name", "size", "options"),
    [
        ("iresnet18", 112, {}),
        ("ir_se18", 112, {}),
        ("iresnet50", 112, {"widths": [8, 16, 32, 64]}),
        ("iresnet100", 112, {"widths": [8, 16, 32, 64]}),
        ("mobilefacenet", 112, {}),
        ("mobilefacenet", 96, {"width_mult": 0.5}),
        ("lowres_irse8", 36, {"widths": [8, 16, 32, 64]}),
        ("lowres_irse8", 32, {"widths": [8, 16, 32, 64]}),
        ("lowres_irse8", 112, {"widths": [8, 16, 32, 64], "stem_stride": 2}),
        ("mobilefacenet", 64, {}),
    ],
)
def test_backbones_produce_embeddings_of_the_configured_size(name, size, options):
    model = build_backbone(name, 96, size, options).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 96) and torch.isfinite(out).all()


def test_iresnet_parameter_counts_match_the_reference_architecture():
    # insightface's iresnet50 / iresnet100 at 112x112 with 512-d output
    count = {n: sum(p.numel() for p in build_backbone(n, 512, 112).parameters()) for n in ("iresnet50", "iresnet100")}
    assert abs(count["iresnet50"] - 43.59e6) < 0.05e6
    assert abs(count["iresnet100"] - 65.16e6) < 0.05e6


def test_ir_se_blocks_have_squeeze_excitation():
    model = build_backbone("ir_se18", 64, 112)
    assert any(type(m).__name__ == "SqueezeExcite" for m in model.modules())
    assert not any(type(m).__name__ == "SqueezeExcite" for m in build_backbone("iresnet18", 64, 112).modules())


def test_every_backbone_has_an_output_layer_for_fine_tuning():
    for name in BACKBONES.names():
        assert hasattr(build_backbone(name, 32, 112 if "lowres" not in name else 36, {}), "output")


def test_unknown_backbone_and_option():
    with pytest.raises(ConfigError, match="unknown backbone 'iresnet5'"):
        build_backbone("iresnet5", 64, 112)
    with pytest.raises(ConfigError, match="has no option 'width'"):
        build_backbone("lowres_irse8", 64, 36, {"width": 3})


def test_stride_two_stem_gives_a_112_input_the_maps_of_a_56_input():
    wide = build_backbone("lowres_irse8", 32, 112, {"widths": [8, 8, 8, 8], "stem_stride": 2})
    assert (
        wide.output.fc.in_features
        == build_backbone("lowres_irse8", 32, 56, {"widths": [8, 8, 8, 8]}).output.fc.in_features
    )
    with pytest.raises(ValueError, match="stem_stride must be 1 or 2"):
        build_backbone("lowres_irse8", 32, 112, {"stem_stride": 4})
