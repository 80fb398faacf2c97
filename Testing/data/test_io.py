from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from NNSegLib.data.io import Geometry, ImageReadError, SimpleITKIO, file_ending, read_channels

ROT = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_3d_round_trip_keeps_geometry_and_values(tmp_path, ending):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 5, (5, 7, 9)).astype(np.int16)
    geo = Geometry((5, 7, 9), (3.0, 0.7, 0.8), (10.5, -3.25, 7.0), ROT)
    path = tmp_path / f"img{ending}"
    SimpleITKIO().write(array, geo, path)
    again, geo2 = SimpleITKIO().read(path)
    np.testing.assert_array_equal(again, array)
    assert geo.mismatch(geo2) is None and geo2.ndim == 3
    # nothing temporary is left behind (for .mhd: exactly header + data file)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert all(not n.startswith(".") for n in names)
    if ending == ".mhd":
        assert len(names) == 2


def test_2d_image_is_read_as_one_slice_and_written_back_2d(tmp_path):
    image = sitk.GetImageFromArray(np.arange(12, dtype=np.float32).reshape(3, 4))
    image.SetSpacing((0.5, 0.25))
    image.SetOrigin((1.0, 2.0))
    sitk.WriteImage(image, str(tmp_path / "a.nii.gz"))
    array, geo = SimpleITKIO().read(tmp_path / "a.nii.gz")
    assert array.shape == (1, 3, 4) and geo.ndim == 2 and geo.spacing[1:] == (0.25, 0.5)
    SimpleITKIO().write(array, geo, tmp_path / "b.nii.gz")
    back = sitk.ReadImage(str(tmp_path / "b.nii.gz"))
    assert back.GetDimension() == 2
    assert back.GetSpacing() == (0.5, 0.25) and back.GetOrigin() == (1.0, 2.0)
    assert Geometry.from_dict(geo.to_dict()) == geo


def test_vector_image_is_refused_with_file_name(tmp_path):
    vec = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.float32), isVector=True)
    sitk.WriteImage(vec, str(tmp_path / "v.nii.gz"))
    with pytest.raises(ImageReadError, match=r"v\.nii\.gz.*vector"):
        SimpleITKIO().read(tmp_path / "v.nii.gz")


def test_corrupt_file_is_refused_with_file_name(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="bad.nii.gz"):
        SimpleITKIO().read(tmp_path / "bad.nii.gz")


def test_channels_must_share_geometry(tmp_path):
    io = SimpleITKIO()
    a = np.zeros((4, 5, 6), np.float32)
    io.write(a, Geometry(a.shape, (1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
             tmp_path / "c_0000.nii.gz")
    io.write(a, Geometry(a.shape, (2.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1)),
             tmp_path / "c_0001.nii.gz")
    with pytest.raises(ImageReadError, match="c_0001.*spacing"):
        read_channels([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"])


def test_file_ending():
    assert file_ending("x/case.seg.nrrd") == ".seg.nrrd"
    assert file_ending("x/case_0000.nii.gz") == ".nii.gz"
    assert file_ending("x/case.MHA") == ".mha"
