"""Pictures written per explanation (report/pictures.py; the focus pictures: test_pictures.py)."""

import numpy as np


def test_components_picture_one_captioned_overlay_per_band():
    from onnx_kernelviz.report.pictures import components_picture

    photo = np.full((40, 60, 3), 128, np.uint8)
    grids = np.zeros((3, 8, 12), np.float32)
    grids[1] = 1.0  # the middle band kept everywhere, the others nowhere
    img = components_picture(photo, grids, ("coarse", "mid"))  # the third caption is missing: numbered
    bar = img.shape[0] - 40  # a 60-px tile takes its caption on two lines
    assert bar == 44 and img.shape[1:] == (3 * 60 + 2 * 4, 3) and img.dtype == np.uint8
    tiles = [img[bar:, i * 64: i * 64 + 60].astype(int) for i in range(3)]
    # a kept band shows the heat colours, a dropped one the dimmed photo
    assert np.abs(tiles[1] - tiles[0]).mean() > 20 and np.abs(tiles[2] - tiles[0]).mean() < 1


def test_explain_writes_the_band_masks_for_component_masks_only(tmp_path):
    import cv2
    import tiny_models

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess

    path = tiny_models.save(tiny_models.two_conv(), tmp_path / "net.onnx")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    for mask, expect in (("bands", True), ("region", False)):
        run = explain(m, [img], 1, "top1", tmp_path / mask, preprocess=pp,
                      config=ExplainConfig(scope="map", steps=3, mask=mask, resolution=8))
        files = run.results[0].files
        assert ("mask_components" in files) == expect
        if expect:
            assert (tmp_path / mask / files["mask_components"]).is_file()
            assert "What is kept of each band" in (tmp_path / mask / "report.html").read_text()


def test_components_picture_of_a_focus_mask_spans_its_rf_box():
    from onnx_kernelviz.report.crops import crop
    from onnx_kernelviz.report.pictures import components_picture

    photo = np.zeros((40, 60, 3), np.uint8)
    photo[:, 30:] = 255  # the box below is the white half
    grids = np.ones((2, 8, 8), np.float32)
    img = components_picture(photo, grids, ("a", "b"), box=(0, 30, 40, 60))
    h, w = crop(photo, (0, 30, 40, 60)).shape[:2]
    assert img.shape[1:] == (2 * w + 4, 3) and img.shape[0] - h in (22, 44)
    # the tiles show the box (white, kept everywhere: heat colours over white), not the whole photo's black half
    assert img[img.shape[0] - h:, :w].min() > 0


def test_components_picture_captions_fit_their_tiles():
    from onnx_kernelviz.report.pictures import components_picture

    grids = np.ones((1, 4, 4), np.float32)
    wide = components_picture(np.zeros((40, 400, 3), np.uint8), grids, ("coarse: colour, layout",))
    narrow = components_picture(np.zeros((40, 150, 3), np.uint8), grids, ("coarse: colour, layout",))
    # one line where it fits; two (name, share) where one would run off a narrow tile (it was cut off)
    assert wide.shape[0] == 40 + 22 and narrow.shape[0] == 40 + 44
    assert (narrow[22:44, :60] < 128).any()  # the second line has text


def test_a_focus_explanation_draws_its_band_masks_over_the_rf_box(tmp_path):
    import cv2
    import tiny_models

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess

    path = tiny_models.save(tiny_models.two_conv(), tmp_path / "net.onnx")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    run = explain(m, [img], 1, "top1", tmp_path / "o", preprocess=pp,
                  config=ExplainConfig(steps=4, focus_fine_steps=2, oracle=False, focus_small_box=0))
    files = run.results[0].files
    crop = cv2.imread(str(tmp_path / "o" / files["focus_crop"]))
    bands = cv2.imread(str(tmp_path / "o" / files["mask_components"]))
    # one tile per band mask, each the size of the report's crop of the rf_box (not of the whole photo)
    assert bands.shape[0] - crop.shape[0] in (22, 44) and bands.shape[1] == 3 * crop.shape[1] + 2 * 4


def test_a_focus_explanations_band_masks_are_named_as_the_bands():
    from onnx_kernelviz.method.config import ExplainConfig
    from onnx_kernelviz.method.methods import METHODS
    from onnx_kernelviz.method.perturb import BandMask

    # the focus box mask's band masks are BandMask's bands: the picture captions them so ("component 0" before)
    assert METHODS.get("mask").component_names(ExplainConfig()) == BandMask.NAMES
