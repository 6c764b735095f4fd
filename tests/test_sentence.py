"""The plain sentence on top of each result (report/sentence.py): built from the result's numbers only."""

from __future__ import annotations

from onnx_kernelviz.report.sentence import (
    ENOUGH_GAIN,
    FAINT_SAID,
    LOW_GAIN,
    MOST_OF_MAP,
    PART_OF_BOUND,
    REFERENCE_KEEPS,
    cannot_isolate,
    cofiring_kernels,
    describe,
)

FOCUS = {"peak": [5, 8], "cells": 6, "rf_box": [40, 90, 150, 200], "kept": 0.953, "others_kept": 0.312,
         "specificity_before": 0.05, "specificity_after": 0.4, "oracle_gain": 12.0}


def _result(**focus) -> dict:
    return {"kernel": 78, "status": "ok", "kept": 0.9, "others_kept": 0.5, "mask_area": 0.2,
            "focus": {**FOCUS, **focus}}


def test_focus_sentence_says_where_how_much_and_how_large_from_the_numbers():
    text = describe(_result(), (14, 14), 80, kept_share=0.123)
    assert text == ("Kernel 78 keeps 0.95 of its activation on the 6 cells around row 5, col 8 of the 14×14 map "
                    "(the boxed area of the photo) while the other 79 kernels there drop to 0.31; the kept region "
                    "is 12 % of the boxed area.")


def test_the_sentence_names_what_x_prime_shows_faintly_beyond_the_kept_region():
    text = describe(_result(), (14, 14), 80, kept_share=0.123, faint_share=0.161)
    assert text is not None and text.endswith(
        "the kept region is 12 % of the boxed area, and x′ keeps fainter traces of the photo over another 16 %.")
    # a sliver of faint mask is not worth a clause; without the kept share there is nothing to add it to
    assert describe(_result(), (14, 14), 80, kept_share=0.123, faint_share=FAINT_SAID / 2).endswith(
        "is 12 % of the boxed area.")
    assert describe(_result(), (14, 14), 80, faint_share=0.161).endswith("drop to 0.31.")


def test_focus_cells_over_most_of_the_map_are_given_as_a_share_of_it():
    """A ≥ ½-peak blob over most of the map makes the "local" picture nearly a whole-map one (PP-OCR 16's held-out
    misses: 110-167 of 196 cells); the sentence says how much of the map, which a cell count alone does not."""
    assert 0.46 < MOST_OF_MAP < 0.56
    text = describe(_result(cells=110), (14, 14), 80)
    assert text is not None and text.startswith(
        "Kernel 78 keeps 0.95 of its activation on the 110 cells around row 5, col 8 of the 14×14 map (56 % of the "
        "map; the boxed area of the photo) while the other 79 kernels")
    # under the share, on all of the map (said already), or without the map's size: as before
    assert "(the boxed area of the photo)" in describe(_result(cells=90), (14, 14), 80)
    assert "on all 196 cells of the 14×14 map (the boxed area" in describe(_result(cells=196), (14, 14), 80)
    assert "of its map (the boxed area" in describe(_result(cells=110))


def test_a_binary_x_prime_has_scattered_pixels_not_faint_traces():
    text = describe(_result(binary_mask=True), (14, 14), 80, kept_share=0.123, faint_share=0.161)
    assert text is not None and text.endswith(
        "the kept region is 12 % of the boxed area, and x′ keeps scattered pixels of the photo over another 16 %.")


def test_a_picture_neither_specific_enough_nor_near_the_bound_says_it_shows_only_part():
    assert 2.0 / 3.4 < PART_OF_BOUND <= 2.0 / 2.8 and 2.0 < ENOUGH_GAIN <= 8.0
    text = describe(_result(specificity_after=0.1, oracle_gain=3.4), (14, 14), 80, kept_share=0.123)
    assert text is not None and text.endswith(
        "12 % of the boxed area. This picture raises its specificity ×2.0 where some change of the input reaches "
        "×3.4: it shows only part of what sets kernel 78 apart here.")
    # near the bound, over it (an optimization, not an exact bound), without one, or specific enough: nothing more
    for after, bound in ((0.1, 2.8), (0.1, 1.9), (0.1, None), (0.4, 12.0)):
        assert describe(_result(specificity_after=after, oracle_gain=bound)).endswith("drop to 0.31.")
    assert describe(_result(specificity_before=None, oracle_gain=3.4)).endswith("drop to 0.31.")


def test_focus_sentence_without_the_layer_facts_and_one_cell():
    text = describe(_result(cells=1, others_kept=1.4), None, None)
    assert text == ("Kernel 78 keeps 0.95 of its activation at row 5, col 8 of its map (the boxed area of the "
                    "photo) while the other kernels there rise to 1.40.")


def test_low_bound_says_the_kernel_cannot_be_told_apart_and_names_its_neighbours():
    r = _result(oracle_gain=1.3, companions=[12, 40, 3])
    assert cannot_isolate(r["focus"])
    assert describe(r, (14, 14), 80, 0.1) == (
        "Kernel 78 cannot be told apart from kernels 12, 40 and 3 at this layer: no change of the input isolates "
        "it (best possible gain ×1.3).")
    # objects with a "kernel" are read too; nothing else is
    assert cofiring_kernels({"companions": [{"kernel": 4, "share": 0.3}, "x", True, 9]}) == [4, 9]
    r = _result(oracle_gain=1.1)
    assert "from the kernels that fire with it there" in describe(r)
    r = _result(oracle_gain=1.4, companions=[{"kernel": 7}])
    assert describe(r).startswith("Kernel 78 cannot be told apart from kernel 7 at this layer")


def test_a_kernel_that_keeps_its_activation_on_the_reference_alone_needs_no_detail_of_the_photo():
    r = _result(kept_on_reference=0.97, specificity_after=0.1, oracle_gain=3.4)
    text = describe(r, (14, 14), 80, kept_share=0.0, reference="mean")
    # it replaces the short-of-bound sentence: what the picture cannot show comes first
    assert text is not None and text.endswith(
        "the kept region is 0 % of the boxed area. It keeps 0.97 of that activation even on a flat image of the "
        "photo's mean colour, the input x′ starts from: kernel 78 needs no detail of the photo to fire here.")
    assert "blurred copy of the photo, the input" in describe(r, reference="blur")
    assert "even on the reference alone, the input" in describe(r, reference="custom") and describe(r)
    # with a low bound too, after the sentence that says so
    low = describe(_result(kept_on_reference=0.92, oracle_gain=1.3, companions=[14]), reference="mean")
    assert low == ("Kernel 78 cannot be told apart from kernel 14 at this layer: no change of the input isolates it "
                   "(best possible gain ×1.3). It keeps 0.92 of its activation there even on a flat image of the "
                   "photo's mean colour, the input x′ starts from: kernel 78 needs no detail of the photo to fire "
                   "here.")
    # well above 1: it fires more on the reference than on the photo
    assert ("It fires 1.6 times as strongly on a flat image of the photo's mean colour, the input x′ starts from, as "
            "on the photo:") in describe(_result(kept_on_reference=1.6), reference="mean")
    # under the threshold, or not measured: nothing
    for v in (REFERENCE_KEEPS - 0.01, None, "x"):
        assert "needs no detail" not in describe(_result(kept_on_reference=v), reference="mean")


def test_focus_cells_covering_the_whole_map_are_called_so():
    text = describe(_result(cells=196), (14, 14), 80)
    assert text is not None and text.startswith("Kernel 78 keeps 0.95 of its activation on all 196 cells of the "
                                                "14×14 map (the boxed area")


def test_the_blocks_own_separable_decides():
    assert cannot_isolate({**FOCUS, "oracle_gain": 1.8, "separable": False})
    assert not cannot_isolate({**FOCUS, "oracle_gain": 1.2, "separable": True})
    assert not cannot_isolate({**FOCUS, "oracle_gain": None, "separable": None})


def test_high_or_missing_bound_gives_the_ordinary_sentence():
    for gain in (LOW_GAIN, 9.0, None, float("nan")):
        r = _result(oracle_gain=gain)
        assert not cannot_isolate(r["focus"]) and describe(r).startswith("Kernel 78 keeps 0.95")


def test_whole_map_sentence_for_results_without_focus():
    r = {"kernel": 3, "status": "ok", "kept": 0.941, "others_kept": 0.52, "mask_area": 0.387}
    assert describe(r, (14, 14), 80) == ("Kernel 3 keeps 0.94 of its activation over the whole 14×14 map while "
                                         "the other 79 kernels drop to 0.52; the mask keeps 39 % of the photo.")
    r["mask_area"] = None  # the pixel method
    assert describe(r).endswith("over its whole map while the other kernels drop to 0.52.")


def test_nothing_to_say():
    assert describe({"kernel": 1, "status": "inactive"}) is None
    assert describe({"kernel": 1, "status": "ok", "kept": None, "others_kept": 0.3}) is None
    assert describe(_result(kept="0.9")) is None
