"""Readers of real DICOM (pydicom's test files) and NIfTI (nibabel-written, nilearn's MNI152) files."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dicom_factory import PLANTED_PHI, write_dicom
from radisim.platform.data import imaging as im


def _testfile(name):
    from pydicom.data import get_testdata_file

    return get_testdata_file(name)


def test_ct_small_rescaled_and_windowed():
    import pydicom

    path = _testfile("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    img, meta = im.read_dicom(path)
    assert img.dtype == np.uint8 and img.shape == (128, 128)
    assert meta.modality == "CT" and meta.view == "axial" and meta.n_frames == 1
    np.testing.assert_array_equal(img, im.to_uint8(im.window_ct(hu, (400, 40))))
    # a different window gives a different picture of the same HU
    lung, _ = im.read_dicom(path, window="lung")
    assert not np.array_equal(lung, img)
    assert meta.patient_key and len(meta.patient_key) == 20 and ds.PatientID not in meta.patient_key


def test_window_ct_values():
    hu = np.array([-1000, -160, 40, 240, 3000], np.float32)
    np.testing.assert_allclose(im.window_ct(hu), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(im.window_ct(np.array([-600.0]), "lung"), [0.5])
    with pytest.raises(ValueError, match="unknown CT window"):
        im.window_ct(hu, "liverish")


def test_mr_small_percentile_normalised():
    path = _testfile("MR_small.dcm")
    img, meta = im.read_dicom(path, window_source="preset")
    assert meta.modality == "MR" and img.shape == (64, 64) and img.dtype == np.uint8
    assert meta.window_from == "percentile"
    # 1st-99th percentiles map onto the full range
    assert img.min() == 0 and img.max() == 255
    assert 0.005 < (img == 255).mean() < 0.05


def test_monochrome1_radiograph_is_inverted(tmp_path):
    ramp = np.tile(np.arange(64, dtype=np.uint16) * 50, (64, 1))
    p1 = write_dicom(tmp_path / "m1.dcm", ramp, modality="DX", photometric="MONOCHROME1", view_position="PA")
    p2 = write_dicom(tmp_path / "m2.dcm", ramp, modality="DX", photometric="MONOCHROME2", view_position="LL")
    a, meta1 = im.read_dicom(p1)
    b, meta2 = im.read_dicom(p2)
    assert meta1.modality == meta2.modality == "DR"
    assert (meta1.view, meta2.view) == ("frontal", "lateral")
    assert a[0, 0] > a[0, -1] and b[0, 0] < b[0, -1]  # MONOCHROME1: high values dark
    np.testing.assert_allclose(a.astype(int), 255 - b.astype(int), atol=1)


def test_multiframe_and_orientation(tmp_path):
    vol = np.stack([np.full((16, 16), v, np.int16) for v in (0, 100, 200)])
    vol[:, 0, 0] = -1000
    sag = [0, 1, 0, 0, 0, -1]   # row along A-P, column along S-I -> normal along L-R
    path = write_dicom(tmp_path / "mf.dcm", vol, modality="CT", iop=sag)
    frames, meta = im.read_dicom_frames(path)
    assert len(frames) == meta.n_frames == 3 and meta.view == "sagittal"
    middle, _ = im.read_dicom(path)
    np.testing.assert_array_equal(middle, frames[1])
    assert im.view_from_orientation([1, 0, 0, 0, 0, -1]) == "coronal"
    assert im.view_from_orientation([1, 0, 0, 0, 1, 0]) == "axial"


def test_rescale_slope_intercept_applied(tmp_path):
    stored = np.full((8, 8), 1040, np.uint16)  # 1040 * 1 - 1000 = 40 HU = window level
    path = write_dicom(tmp_path / "ri.dcm", stored, modality="CT", intercept=-1000)
    img, _ = im.read_dicom(path)
    assert np.all(img == 128)


def test_safe_meta_holds_no_phi(tmp_path):
    path = write_dicom(tmp_path / "phi.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16), modality="MR",
                       phi=PLANTED_PHI, body_part="HEAD")
    _, meta = im.read_dicom(path, salt="s1")
    text = repr(meta) + str(meta.to_dict())
    for value in PLANTED_PHI.values():
        assert value not in text
    assert meta.body_part == "head"
    assert meta.patient_key == im.salted_key(PLANTED_PHI["PatientID"], "s1", "patient")
    assert meta.patient_key != im.read_dicom(path, salt="s2")[1].patient_key


def test_bad_dicoms_raise_with_reason(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"definitely not dicom" * 20)
    with pytest.raises(im.ImagingError) as err:
        im.read_dicom(junk)
    assert err.value.reason == "dicom_unreadable"
    nopix = write_dicom(tmp_path / "nopix.dcm", np.zeros((8, 8), np.uint16), with_pixels=False)
    with pytest.raises(im.ImagingError) as err:
        im.read_dicom(nopix)
    assert err.value.reason == "dicom_no_pixels"
    with pytest.raises(im.ImagingError) as err:
        im.read_dicom(_testfile("MR_truncated.dcm"))
    assert err.value.reason in ("dicom_no_pixels", "dicom_unreadable")
    # bytes work as well as paths
    data = open(_testfile("CT_small.dcm"), "rb").read()
    assert im.read_dicom(data)[0].shape == (128, 128)


def _nifti(tmp_path, data, affine=None, name="v.nii.gz"):
    import nibabel as nib

    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_nifti_canonical_orientation_and_views(tmp_path):
    # a volume with a bright marker at high x (Right), low y (posterior), high z (Superior), stored LPS-flipped
    vol = np.zeros((10, 12, 14), np.float32)
    vol[8, 2, 12] = 1.0
    ras_path = _nifti(tmp_path, vol)
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])   # LPS storage of the same anatomy
    lps_path = _nifti(tmp_path, vol[::-1, ::-1, :].copy(), flip @ np.eye(4) + np.array(
        [[0, 0, 0, 9], [0, 0, 0, 11], [0, 0, 0, 0], [0, 0, 0, 0]]), name="lps.nii.gz")
    v1, a1 = im.read_nifti(ras_path)
    v2, a2 = im.read_nifti(lps_path)
    np.testing.assert_array_equal(v1, v2)
    ax = im.nifti_slices(v1, a1, "axial", indices=[12])[0]
    assert ax.shape == (12, 10)
    r, c = np.argwhere(ax == 1)[0]
    assert c < 5 and r > 6   # patient's right on the viewer's left; posterior at the bottom
    cor = im.nifti_slices(v1, a1, "coronal", indices=[2])[0]
    r, c = np.argwhere(cor == 1)[0]
    assert cor.shape == (14, 10) and r < 3 and c < 5   # superior at the top
    sag = im.nifti_slices(v1, a1, "sagittal", indices=[8])[0]
    r, c = np.argwhere(sag == 1)[0]
    assert sag.shape == (14, 12) and r < 3 and c > 6   # anterior on the left, so posterior right
    assert len(im.nifti_slices(v1, a1, "axial", n=3)) == 3


def test_nifti_wrong_dimensions(tmp_path):
    with pytest.raises(im.ImagingError) as err:
        im.read_nifti(_nifti(tmp_path, np.zeros((8, 8), np.float32), name="2d.nii"))
    assert err.value.reason == "nifti_bad_dims"
    with pytest.raises(im.ImagingError) as err:
        im.read_nifti(_nifti(tmp_path, np.zeros((4, 4, 4, 3), np.float32), name="4d.nii"))
    assert err.value.reason == "nifti_bad_dims"
    v, _ = im.read_nifti(_nifti(tmp_path, np.ones((4, 5, 6, 1), np.float32), name="4d1.nii"))
    assert v.shape == (4, 5, 6)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(im.ImagingError) as err:
        im.read_nifti(bad)
    assert err.value.reason == "nifti_unreadable"


def test_mni_template_slices():
    from nilearn.datasets import load_mni152_template

    tmpl = load_mni152_template()
    import nibabel as nib

    raw = nib.Nifti1Image(np.asarray(tmpl.get_fdata(), np.float32), tmpl.affine).to_bytes()
    vol, aff = im.read_nifti(raw)
    assert im.guess_volume_modality(vol) == "MR"
    for view in im.VIEWS:
        slices = im.nifti_slices(vol, aff, view, n=3)
        assert len(slices) == 3
        img = im.to_uint8(im.normalise_mr(slices[1]))
        assert img.std() > 20  # brain tissue, not an empty edge slice
    # axial: the skull/brain is taller (anterior-posterior) than wide
    ax = im.nifti_slices(vol, aff, "axial", n=1)[0]
    rows = np.where(ax.max(axis=1) > 0)[0]
    cols = np.where(ax.max(axis=0) > 0)[0]
    assert np.ptp(rows) > np.ptp(cols)


def test_png_roundtrip_and_corrupt_images():
    arr = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    data = im.encode_png(arr)
    np.testing.assert_array_equal(im.decode_image(data), arr)
    with pytest.raises(im.ImagingError) as err:
        im.decode_image(data[: len(data) // 2])
    assert err.value.reason == "image_corrupt"
    buf = io.BytesIO()
    Image.fromarray(np.stack([arr] * 3, -1)).save(buf, format="JPEG")
    jpg = buf.getvalue()
    assert im.decode_image(jpg).shape == (48, 64)
    with pytest.raises(im.ImagingError):
        im.decode_image(jpg[:200])
    with pytest.raises(im.ImagingError):
        im.decode_image(b"")
    wide = (np.arange(64 * 64, dtype=np.uint16) * 16).reshape(64, 64)
    buf = io.BytesIO()
    Image.fromarray(wide).save(buf, format="PNG")
    g = im.decode_image(buf.getvalue())
    assert g.dtype == np.uint8 and g.max() == 255 and g.min() == 0
    with pytest.raises(ValueError):
        im.encode_png(arr.astype(np.float32))
    assert im.resize_gray(arr, 32).shape == (32, 32)


def test_salted_key_stable_and_salt_dependent(monkeypatch):
    monkeypatch.setenv(im.SALT_ENV, "envsalt")
    assert im.salted_key("X") == im.salted_key("X", "envsalt")
    assert im.salted_key("X", "a") != im.salted_key("X", "b")
    assert im.salted_key("X", "a", "patient") != im.salted_key("X", "a", "study")
    assert im.salted_key("") is None and im.salted_key(None) is None


def test_header_window_is_what_the_radiologist_saw():
    """MR_small.dcm carries WindowCenter 600 / WindowWidth 1600: pydicom's apply_voi_lut (DICOM's
    LINEAR function) decides the grey levels, not percentiles; the preset path ignores the header."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = _testfile("MR_small.dcm")
    img, meta = im.read_dicom(path)
    assert meta.window_from == "header" and meta.spacing == (0.3125, 0.3125)
    ds = pydicom.dcmread(path)
    values = apply_modality_lut(ds.pixel_array.astype(np.float64), ds)
    c, w = 600.0, 1600.0  # PS3.3 C.11.2.1.2.1: y = ((x - (c - 0.5)) / (w - 1) + 0.5), clipped
    expected = np.clip((values - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
    assert np.abs(img.astype(float) - expected * 255).max() <= 1.5
    # the same pixels through a lossless JPEG 2000 transfer syntax decode (pylibjpeg-openjpeg) identically
    jp2, jp2_meta = im.read_dicom(_testfile("MR_small_jp2klossless.dcm"))
    assert jp2_meta.window_from == "header" and np.array_equal(jp2, img)


def test_ct_window_as_width_level_and_preset():
    assert im.parse_window("1500/-600") == (1500.0, -600.0) == im.parse_window([1500, -600])
    assert im.parse_window("lung") == "lung"
    with pytest.raises(ValueError, match="width/level"):
        im.parse_window("wide")
    hu = np.array([-1350.0, -600.0, 150.0])
    assert np.allclose(im.window_ct(hu, im.parse_window("1500/-600")), [0.0, 0.5, 1.0])


def test_missing_decoder_is_named(monkeypatch):
    """A JPEG 2000 DICOM on a machine without its decoder: the reason says so and keeps pydicom's
    message, which names the packages that would decode it. (pylibjpeg-openjpeg is installed here, so
    the test takes it out of pydicom's decoder registry for the duration of the test.)"""
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEG2000Lossless

    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(im.ImagingError) as err:
        im.read_dicom(_testfile("MR_small_jp2klossless.dcm"))
    assert err.value.reason == "dicom_decoder_missing"
    assert "JPEG 2000" in str(err.value) and "pylibjpeg-openjpeg" in str(err.value)


def test_deidentify_drops_the_basic_profile(tmp_path):
    import pydicom

    p = write_dicom(tmp_path / "phi.dcm", np.arange(256, dtype=np.uint16).reshape(16, 16), phi=PLANTED_PHI)
    ds = pydicom.dcmread(p)
    ds.add_new(0x00091010, "LO", "PRIVATEPHI")
    keys = im.deidentify(ds, "s")
    assert keys["patient_key"] == im.salted_key(PLANTED_PHI["PatientID"], "s", "patient")
    assert not any(k in ds for k in im.BASIC_PROFILE) and not any(e.tag.is_private for e in ds)
    dumped = str(ds) + str(ds.file_meta)
    assert not any(v in dumped for v in PLANTED_PHI.values())


def test_fit_side_makes_pixels_square():
    thick = np.tile(np.arange(40, dtype=np.uint8), (10, 1))  # 10 rows of 5 mm, 40 columns of 1 mm
    out = im.fit_side(thick, 64, spacing=(5.0, 1.0))
    assert out.shape == (50, 40)
    assert im.fit_side(thick, 20).shape == (5, 20)
    assert im.slice_spacing(np.diag([0.8, 0.8, 5.0, 1.0]), "coronal") == (5.0, 0.8)
