"""The paper's published numbers and the names its tables use, kept as data for labelled
reference rows next to ours (paper Tables 1-3 and Fig. 4; docs/design.md section 6)."""

# Published numbers (paper Tables 1-3): protocol -> [(method, metric, value)].
# The frozen-backbone rows are the authors' runs of the same head on other backbones.
REFERENCE_RESULTS: dict[str, list[tuple[str, str, float]]] = {
    "ak_full": [("ActionDiff", "micro_ap", 80.79), ("V-JEPA", "micro_ap", 78.64), ("SDv2", "micro_ap", 78.66),
                ("VideoMAEv2", "micro_ap", 63.90)],
    "ak_unseen_species": [("ActionDiff", "top1_accuracy", 51.49), ("V-JEPA", "top1_accuracy", 51.40),
                          ("SDv2", "top1_accuracy", 41.96), ("VideoMAEv2", "top1_accuracy", 37.25)],
    "charades_1st_1st": [("ActionDiff", "micro_ap", 36.5), ("V-JEPA", "micro_ap", 23.4), ("SDv2", "micro_ap", 35.0),
                         ("VideoMAEv2", "micro_ap", 16.9)],
    "charades_3rd_1st": [("ActionDiff", "micro_ap", 30.2), ("V-JEPA", "micro_ap", 17.3), ("SDv2", "micro_ap", 29.4),
                         ("VideoMAEv2", "micro_ap", 15.3)],
    "ucf_to_hmdb": [("ActionDiff", "top1_accuracy", 77.6), ("V-JEPA", "top1_accuracy", 51.75),
                    ("SDv2", "top1_accuracy", 76.5), ("VideoMAEv2", "top1_accuracy", 23.8)],
    "hmdb_to_ucf": [("ActionDiff", "top1_accuracy", 81.5), ("V-JEPA", "top1_accuracy", 60.58),
                    ("SDv2", "top1_accuracy", 79.5), ("VideoMAEv2", "top1_accuracy", 26.7)],
}
# The backbone of each published method, as the tables' `backbone` column names it (the paper's
# V-JEPA is v1 and its VideoMAEv2 the giant ViT-g; ours are V-JEPA 2 and any VideoMAE checkpoint).
REFERENCE_BACKBONES = {"ActionDiff": "SVD", "V-JEPA": "V-JEPA (v1)", "SDv2": "SDv2", "VideoMAEv2": "VideoMAE v2 (ViT-g)"}
# Fig. 4 of the paper: Spearman rho between species-to-species accuracy and action-frequency similarity.
REFERENCE_FREQUENCY_RHO = 0.74

# How tables name our backbones (the registry's names are lower-case identifiers; a plugin
# backbone is shown under its own name).
DISPLAY_NAMES = {"svd": "SVD", "sdv2": "SDv2", "videomae": "VideoMAE", "vjepa2": "V-JEPA 2"}


def display_name(name: str) -> str:
    """The name a table shows for backbone `name`."""
    return DISPLAY_NAMES.get(name, name)
