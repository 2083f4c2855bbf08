"""Profiles: NxHxW parsing and validation, splitting into several profiles, choosing one."""

from __future__ import annotations

import pytest

from superslomo.contracts.shapes import (
    Profile,
    ProfileError,
    Shape,
    choose_profile,
    make_profile,
    parse_profiles,
    parse_shape,
    split_profiles,
    tensor_shape,
)
from superslomo.errors import SloMoError


def test_parse_shape_reads_nxhxw():
    assert parse_shape("2x736x1280") == Shape(2, 736, 1280)
    assert parse_shape(" 1X64x64 ") == Shape(1, 64, 64)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("1280x720", "NxHxW"),
        ("1x720x1280", "height 720 must be a positive multiple of 32"),
        ("1x736x1290", "width 1290"),
        ("0x64x64", "batch must be at least 1"),
        ("1x0x64", "height 0"),
        ("axbxc", "NxHxW"),
    ],
)
def test_parse_shape_rejects_bad_input_with_a_sloMo_error(text, needle):
    with pytest.raises(SloMoError, match=needle):
        parse_shape(text, "--opt")


def test_profile_requires_min_opt_max_order():
    with pytest.raises(ProfileError, match="min <= opt <= max"):
        make_profile(Shape(1, 64, 64), Shape(1, 1088, 64), Shape(4, 736, 1920))
    with pytest.raises(ProfileError, match="batch"):
        parse_profiles("2x64x64", "1x64x64", "4x64x64")


def test_single_profile_is_the_given_range():
    [profile] = parse_profiles("1x64x64", "1x736x1280", "4x1088x1920")
    assert profile == Profile(Shape(1, 64, 64), Shape(1, 736, 1280), Shape(4, 1088, 1920))


def test_split_profiles_nested_growing_and_valid():
    base = make_profile(Shape(1, 64, 64), Shape(1, 736, 1280), Shape(4, 2176, 3840))
    profiles = split_profiles(base, 3)
    assert len(profiles) == 3
    assert profiles[-1].max == base.max
    for prev, cur in zip(profiles, profiles[1:], strict=False):
        assert cur.max.pixels > prev.max.pixels
    for p in profiles:
        assert p.min == base.min
        for lo, op, hi in zip(p.min.astuple(), p.opt.astuple(), p.max.astuple(), strict=False):
            assert lo <= op <= hi
        assert p.max.h % 32 == 0 and p.max.w % 32 == 0
    with pytest.raises(ProfileError):
        split_profiles(base, 0)


def test_choose_profile_picks_the_tightest_admitting_profile():
    base = make_profile(Shape(1, 64, 64), Shape(1, 736, 1280), Shape(4, 2176, 3840))
    profiles = split_profiles(base, 3)
    assert choose_profile(profiles, Shape(1, 64, 64)) == 0
    assert choose_profile(profiles, Shape(4, 2176, 3840)) == 2
    small_max = profiles[0].max
    assert choose_profile(profiles, small_max) == 0
    just_over = Shape(1, small_max.h + 32, small_max.w)
    assert choose_profile(profiles, just_over) == 1


def test_choose_profile_outside_every_profile_says_how_to_fix():
    profiles = parse_profiles("1x64x64", "1x128x128", "2x256x256")
    with pytest.raises(ProfileError, match="rebuild with `slomo build-engine"):
        choose_profile(profiles, Shape(3, 128, 128))
    with pytest.raises(ProfileError):
        choose_profile(profiles, Shape(1, 32, 64))


def test_profile_json_round_trip_and_malformed():
    [p] = parse_profiles("1x64x64", "1x128x128", "2x256x256")
    assert Profile.from_json(p.to_json()) == p
    with pytest.raises(ProfileError):
        Profile.from_json({"min": [1, 2]})


def test_tensor_shapes_follow_the_graph_contract():
    s = Shape(2, 64, 96)
    assert tensor_shape("frame0", s) == (2, 3, 64, 96)
    assert tensor_shape("frame_t", s, "uint8") == (2, 64, 96, 3)
    assert tensor_shape("flow10", s) == (2, 2, 64, 96)
    assert tensor_shape("t", s) == (2,)
    with pytest.raises(ProfileError):
        tensor_shape("mask", s)
