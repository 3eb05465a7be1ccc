"""pipeline.preprocess_encoded + pipeline.device_decode on CPU (the GPU path is the same code with
device="cuda": torchvision's decode_jpeg dispatches to nvJPEG), against the host path's pixels."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from radisim.curriculum.phantom import generate_case
from radisim.platform.data import pipeline
from radisim.platform.data.imaging import encode_png


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def rows():
    images = [generate_case(0, i, 320).image for i in range(3)]
    data = [_jpeg(images[0]), encode_png(images[1]), _jpeg(images[2]), b"not an image"]
    return {"image": np.array(data, dtype=object), "image_id": np.array(list("abcd"), dtype=object),
            "caption": np.array(["CT head", "MR knee", "chest radiograph", "x"], dtype=object)}


def test_encoded_batch_keeps_jpeg_bytes_decodes_the_rest_and_counts_rejects(rows, caplog):
    out = pipeline.preprocess_encoded(rows, 64, "radisim-tiny")
    assert out["image_kind"].tolist() == [pipeline.JPEG_BYTES, pipeline.RAW_PIXELS, pipeline.JPEG_BYTES]
    assert out["image_nbytes"].tolist() == [len(rows["image"][0]), 64 * 64, len(rows["image"][2])]
    assert bytes(out["image_bytes"][0, : out["image_nbytes"][0]]) == rows["image"][0]
    assert out["image_bytes"].dtype == np.uint8 and out["image_bytes"].shape[1] == max(out["image_nbytes"])
    assert out["text"].shape[0] == 3 and "skipped 1 undecodable images, e.g. ['d']" in caplog.text


def test_device_decode_matches_the_host_decode_within_one_grey_level(rows):
    keep = {k: v[:3] for k, v in rows.items()}
    batch = {k: torch.from_numpy(v) for k, v in pipeline.preprocess_encoded(keep, 64, "radisim-tiny").items()}
    images = pipeline.device_decode(batch, 64, "cpu")
    host = np.stack([pipeline.decode_gray(d, 64) for d in keep["image"]])
    assert images.dtype == torch.uint8 and tuple(images.shape) == (3, 64, 64)
    diff = np.abs(images.numpy().astype(int) - host.astype(int))
    assert diff.max() <= 1 and diff[1].max() == 0  # the PNG row is the host's own pixels


def test_a_corrupt_jpeg_names_its_rows():
    bad = b"\xff\xd8\xff" + b"\x00" * 64
    out = pipeline.preprocess_encoded({"image": np.array([bad], dtype=object), "image_id": np.array(["z"], dtype=object),
                                       "caption": np.array(["c"], dtype=object)}, 32, "radisim-tiny")
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        pipeline.device_decode({k: torch.from_numpy(v) for k, v in out.items()}, 32, "cpu")


def test_device_batch_options_pin_only_for_cuda():
    import inspect

    from ray.data import DataIterator

    cpu, cuda = pipeline.device_batch_options("cpu"), pipeline.device_batch_options("cuda:0")
    assert cpu["pin_memory"] is False and cuda["pin_memory"] is True and cuda["prefetch_batches"] == 2
    assert set(cpu) <= set(inspect.signature(DataIterator.iter_torch_batches).parameters)


def test_dicom_bytes_in_a_manifest_decode_windowed():
    from pydicom.data import get_testdata_file

    from radisim.platform.data.imaging import read_dicom, resize_gray

    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    assert pipeline.is_dicom(data) and not pipeline.is_dicom(_jpeg(np.zeros((8, 8), np.uint8)))
    np.testing.assert_array_equal(pipeline.decode_gray(data, 32), resize_gray(read_dicom(data)[0], 32))
