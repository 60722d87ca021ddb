"""Settings objects: validation, unknown keys, hashing."""

import pytest

from actiondiff.settings import DecodeSettings, ExtractSettings, from_dict, settings_hash, tap_name


def test_defaults_are_the_papers():
    decode, extract = DecodeSettings(), ExtractSettings()
    assert (decode.stride, decode.offset, decode.window, decode.height, decode.width) == (4, 0, 25, 576, 1024)
    assert (extract.layers, extract.timestep_indices, extract.num_timesteps) == ((9,), (20,), 30)
    assert extract.conditioning == "middle_frame"
    assert (extract.fps_id, extract.motion_bucket_id, extract.cond_aug) == (6, 127, 0.02)


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match=r"\['layer'\]"):
        from_dict(ExtractSettings, {"layer": [9]}, "config key `extraction`")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"layers": [14]}, "layers"),
        ({"layers": []}, "layers"),
        ({"timestep_indices": [30]}, "timestep_indices"),
        ({"conditioning": "middle"}, "conditioning"),
        ({"dtype": "fp8"}, "dtype"),
        ({"conditioning": "action_text"}, "action_names"),
    ],
)
def test_bad_values_are_refused_by_name(values, message):
    with pytest.raises(ValueError, match=message):
        from_dict(ExtractSettings, values, "test")


def test_decode_size_must_suit_the_vae():
    with pytest.raises(ValueError, match="multiples of 8"):
        DecodeSettings(height=60)


def test_hash_is_stable_and_sensitive():
    a = from_dict(ExtractSettings, {"layers": [9], "timestep_indices": [20]}, "test")
    assert settings_hash(a) == settings_hash(ExtractSettings())
    assert settings_hash(a) != settings_hash(ExtractSettings(layers=(3,)))
    assert len(settings_hash(a)) == 12


def test_taps_and_names():
    extract = ExtractSettings(layers=(9, 3), timestep_indices=(20, 5))
    assert extract.taps == [(3, 5), (3, 20), (9, 5), (9, 20)]
    assert extract.deepest_layer == 9
    assert tap_name(9, 20) == "L09_T20"
