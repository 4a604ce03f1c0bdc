"""The task helpers' finer rules: the memory check, the CNN widths, the standardiser's constant columns,
bilinear resizing and JPEG draft decoding."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from lossbench.tasks._common import check_channels, check_images_fit, fit_standardizer, read_image, standardize


def test_images_are_refused_only_when_they_need_more_memory_than_the_machine_has(monkeypatch):
    # 4096-byte pages x 2**21 pages = 8 GiB; 256 x 256 float32 pixels made with 8 copies = 2 MiB an image
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 2**21}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    check_images_fit(4096, 256, "digit canvases", "lower upscale", copies=8)  # exactly 8 GiB: it fits
    with pytest.raises(ValueError) as refused:
        check_images_fit(4097, 256, "digit canvases", "lower upscale", copies=8)  # one image more: it does not
    assert str(refused.value) == (
        "Expected the digit canvases to fit in memory, but 4,097 of 256 x 256 pixels need about 8.0 GiB to make, "
        "and this machine has 8.0 GiB; lower upscale."
    )
    pages["SC_PHYS_PAGES"] = 2**22  # a machine with twice the memory takes them
    check_images_fit(4097, 256, "digit canvases", "lower upscale", copies=8)


@pytest.mark.parametrize("channels", [(True, 8), 8, (), [8, 16.0]], ids=["a-bool", "not-a-sequence", "empty", "a-float"])
def test_channels_that_are_not_whole_numbers_in_a_tuple_or_list_are_refused(channels):
    # True is an int to Python, but not a width; a bare 8 is not a list of widths
    with pytest.raises(ValueError) as refused:
        check_channels(channels)
    assert str(refused.value) == (
        f"Expected `channels` to be a non-empty tuple of whole numbers, 1 or more, but got {channels!r}."
    )


def test_valid_channels_come_back_as_a_tuple():
    assert check_channels([np.int64(4), 16]) == (4, 16) and type(check_channels([4, 16])) is tuple
    assert check_channels((1,)) == (1,)


def test_only_a_column_with_no_spread_at_all_gets_std_1():
    # column 0 never varies: its std 0 becomes 1, so it is only shifted, never divided by 0; column 1
    # varies by 2e-150, column 2 by 2e-6: however small, a spread above 0 is kept and divides
    x_train = np.array([[5.0, 0.0, 3.0], [5.0, 2e-150, 3.0 + 2e-6]])
    mean, std = fit_standardizer(x_train)
    assert mean.tolist() == [5.0, 1e-150, 3.000001]
    assert std[0] == 1.0 and std[1] == 1e-150 and std[2] == pytest.approx(1e-6, rel=1e-9)
    scaled = standardize(np.vstack([x_train, [[7.0, 0.0, 3.0]]]), mean, std)
    np.testing.assert_allclose(scaled, [[0.0, -1.0, -1.0], [0.0, 1.0, 1.0], [2.0, -1.0, -1.0]], atol=1e-6)
    assert scaled.dtype == np.float32 and np.isfinite(scaled).all()


@pytest.mark.parametrize("value, rows", [(0.1, 3), (7.7, 7)])
def test_a_column_of_equal_values_is_constant_whatever_its_rounded_std(value, rows):
    # the std of equal values can come out a rounding error above 0 (three 0.1s: 1.4e-17); such a
    # column is still constant: std 1 and its value as its mean (the mean is rounded too), so it is
    # shifted to exactly 0 and a later value is not divided by 1e-17
    x_train = np.full((rows, 2), value)
    x_train[:, 1] = np.arange(rows)
    assert x_train[:, 0].std() > 0 and x_train[:, 0].mean() != value  # the rounding this rule is for
    mean, std = fit_standardizer(x_train)
    assert mean[0] == value and std[0] == 1.0
    assert mean[1] == np.arange(rows).mean() and std[1] == np.arange(rows).std()  # a varying column as before
    scaled = standardize(np.array([[value, 0.0], [value + 2.0, 0.0]]), mean, std)
    assert scaled[:, 0].tolist() == [0.0, 2.0]


def test_an_image_is_squashed_to_a_square_by_bilinear_interpolation(tmp_path):
    # upscaling by 2 with pixel centres aligned: an output pixel lies 1/4 or 3/4 of the way between two
    # input pixels, or beyond the edge (the edge pixel); 0 and 100 give 0, 25, 75, 100
    Image.fromarray(np.array([[0, 100], [100, 200]], dtype=np.uint8)).save(tmp_path / "square.png")
    assert read_image(tmp_path / "square.png", 4, "L", "row 1")[0].tolist() == [
        [0, 25, 75, 100],
        [25, 50, 100, 125],
        [75, 100, 150, 175],
        [100, 125, 175, 200],
    ]
    # a 2 x 1 image is stretched to 4 x 4: no cropping, every row the same
    Image.fromarray(np.array([[0, 100]], dtype=np.uint8)).save(tmp_path / "wide.png")
    assert read_image(tmp_path / "wide.png", 4, "L", "row 1")[0].tolist() == [[0, 25, 75, 100]] * 4


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_before_resizing(tmp_path, monkeypatch):
    # a 512 x 384 JPEG asked for at 64 x 64: Pillow's draft decodes it at 1/4 scale (128 x 96, the
    # smallest scale at least 64 on both sides), which is then resized; the halves keep their colours
    pixels = np.zeros((384, 512, 3), dtype=np.uint8)
    pixels[:, :256] = (220, 30, 30)  # the left half red, the right half blue
    pixels[:, 256:] = (30, 30, 220)
    Image.fromarray(pixels).save(tmp_path / "large.jpg", quality=95)
    drafts, resized_from = [], []
    draft, resize = JpegImagePlugin.JpegImageFile.draft, Image.Image.resize

    def spy_draft(self, mode, size):
        result = draft(self, mode, size)
        drafts.append((mode, size, self.size))
        return result

    def spy_resize(self, size, *args, **kwargs):
        resized_from.append(self.size)
        return resize(self, size, *args, **kwargs)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy_draft)
    monkeypatch.setattr(Image.Image, "resize", spy_resize)
    image = read_image(tmp_path / "large.jpg", 64, "RGB", "row 1")
    assert drafts == [("RGB", (64, 64), (128, 96))]
    assert resized_from == [(128, 96)]  # decoded at the reduced size, not at 512 x 384
    assert image.shape == (3, 64, 64) and image.dtype == np.uint8
    left, right = image[:, :, :28].astype(int), image[:, :, 36:].astype(int)
    assert (abs(left - np.array([220, 30, 30])[:, None, None]) <= 8).all()
    assert (abs(right - np.array([30, 30, 220])[:, None, None]) <= 8).all()


@pytest.mark.parametrize("archive", ["zip", "gzip"])
def test_a_compressed_csv_is_named_as_an_archive_to_unpack(tmp_path, archive):
    # Kaggle hands out titanic.zip; a gzipped copy is common too: "not UTF-8 text" would not say what to do
    import gzip
    import zipfile

    from lossbench.tasks import DataError
    from lossbench.tasks._common import read_csv

    text = "name,age\nAllen,29\n"
    path = tmp_path / ("titanic.zip" if archive == "zip" else "train.csv.gz")
    if archive == "zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("train.csv", text)
    else:
        path.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError) as error:
        read_csv(path)
    assert str(error.value) == (
        f"{path} is a {archive} archive, not a CSV file: unpack it and pass the CSV file inside "
        f"({'unzip' if archive == 'zip' else 'gunzip'} {path.name})."
    )
