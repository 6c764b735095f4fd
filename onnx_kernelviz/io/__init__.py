"""Files in and out: image decoding (bounded, robust), preprocessing settings, the output folder, atomic writes."""
