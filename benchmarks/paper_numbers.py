"""The paper's numbers, transcribed by hand so that benchmarks/REPORT.md can set kcc's beside them.

Source: Phan et al., "Clean & Compact: Efficient Data-Free Backdoor Defense with Model
Compactness", ECCV 2024: Tables 2, 3, 4 (its GTSRB half), 7 and 8, ResNet-18. Table, row and
column names are the paper's. ACC and ASR are percentages, stored as `(ACC, ASR)` pairs; the
paper reports no RA. Figures 1 and 3 are plots without printed values, so only their claims
are kept (`FIGURE_CLAIMS`). The paper's PDF splits two latencies of Table 2 ("0.14 3ms",
"0.110 ms" in bold); they are read as 0.143 and 0.110 ms.

Nothing here is computed: a value the paper does not print is absent, never estimated.
"""

CITATION = ("Phan et al., Clean & Compact: Efficient Data-Free Backdoor Defense with Model "
            "Compactness, ECCV 2024")

# Table 2: jointly purifying and compressing ResNet-18 on CIFAR-10 (inference on an RTX 3090).
TABLE_2_COLUMNS = ("No Defense", "ANP 2x", "CLP 2x", "C&C 2x", "C&C 3x", "C&C 4x")
TABLE_2 = {
    "BadNet": {"No Defense": (94.13, 97.96), "ANP 2x": (10.00, 0.00), "CLP 2x": (10.00, 0.00),
               "C&C 2x": (92.16, 2.88), "C&C 3x": (91.25, 1.30), "C&C 4x": (90.77, 0.71)},
    "Blended": {"No Defense": (93.45, 99.67), "ANP 2x": (10.00, 0.00), "CLP 2x": (11.30, 0.00),
                "C&C 2x": (91.01, 4.02), "C&C 3x": (90.48, 2.49), "C&C 4x": (89.13, 2.54)},
    "InputAware": {"No Defense": (94.33, 99.60), "ANP 2x": (23.05, 25.78),
                   "CLP 2x": (10.00, 0.00), "C&C 2x": (92.93, 0.90), "C&C 3x": (92.84, 0.70),
                   "C&C 4x": (92.70, 0.60)},
    "WaNet": {"No Defense": (93.71, 99.32), "ANP 2x": (10.00, 0.00), "CLP 2x": (10.00, 0.00),
              "C&C 2x": (92.38, 1.41), "C&C 3x": (92.72, 2.40), "C&C 4x": (92.28, 1.10)},
    "BadNet A2A": {"No Defense": (93.70, 91.12), "ANP 2x": (12.38, 10.21),
                   "CLP 2x": (10.00, 10.00), "C&C 2x": (92.42, 3.87), "C&C 3x": (91.85, 3.66),
                   "C&C 4x": (91.27, 3.36)},
    "Blended A2A": {"No Defense": (93.59, 92.59), "ANP 2x": (10.00, 10.00),
                    "CLP 2x": (10.00, 10.00), "C&C 2x": (90.78, 5.62), "C&C 3x": (90.00, 4.81),
                    "C&C 4x": (90.14, 4.52)},
    "InputAware A2A": {"No Defense": (94.01, 91.79), "ANP 2x": (10.00, 10.00),
                       "CLP 2x": (13.68, 11.72), "C&C 2x": (93.46, 1.80),
                       "C&C 3x": (93.06, 2.30), "C&C 4x": (91.19, 2.49)},
    "WaNet A2A": {"No Defense": (93.74, 92.18), "ANP 2x": (10.00, 10.00),
                  "CLP 2x": (10.00, 10.00), "C&C 2x": (93.16, 2.03), "C&C 3x": (92.82, 1.81),
                  "C&C 4x": (91.83, 1.84)},
}
# Table 2's lower rows, as printed (text, not numbers: "N/A" and "None" are the paper's words).
TABLE_2_FOOTER = {
    "Data Req.": {"No Defense": "N/A", "ANP 2x": "1% clean", "CLP 2x": "Data-free",
                  "C&C 2x": "Data-free", "C&C 3x": "Data-free", "C&C 4x": "Data-free"},
    "Comp. Type": {"No Defense": "N/A", "ANP 2x": "Unstructured", "CLP 2x": "Channel",
                   "C&C 2x": "Low-rank", "C&C 3x": "Low-rank", "C&C 4x": "Low-rank"},
    "Parameters": {"No Defense": "11.17M", "ANP 2x": "5.58M", "CLP 2x": "5.58M",
                   "C&C 2x": "5.58M", "C&C 3x": "3.72M", "C&C 4x": "2.78M"},
    "Inference Time": {"No Defense": "0.201 ms", "ANP 2x": "0.201 ms", "CLP 2x": "0.150 ms",
                       "C&C 2x": "0.143 ms", "C&C 3x": "0.125 ms", "C&C 4x": "0.110 ms"},
    "Speed Up": {"No Defense": "N/A", "ANP 2x": "None", "CLP 2x": "1.34x", "C&C 2x": "1.41x",
                 "C&C 3x": "1.61x", "C&C 4x": "1.83x"},
}
TABLE_2_DEVICE = "NVIDIA RTX 3090 GPU"

# Table 3: defenses on ResNet-18, CIFAR-10; two blocks, each closed by the paper's "Average".
TABLE_3_COLUMNS = ("No Defense", "NAD", "I-BAU", "ANP", "CLP", "C&C (Ours)")
TABLE_3_DATA = {"No Defense": "N/A", "NAD": "1% clean", "I-BAU": "1% clean", "ANP": "1% clean",
                "CLP": "Data-free", "C&C (Ours)": "Data-free"}
TABLE_3 = {
    "all-to-one": {
        "BadNet": {"No Defense": (94.13, 97.96), "NAD": (90.10, 13.53), "I-BAU": (81.16, 97.16),
                   "ANP": (88.25, 0.00), "CLP": (88.45, 3.29), "C&C (Ours)": (92.27, 4.52)},
        "Blended": {"No Defense": (93.45, 99.67), "NAD": (90.55, 1.30), "I-BAU": (84.52, 11.19),
                    "ANP": (88.55, 2.28), "CLP": (87.79, 4.42), "C&C (Ours)": (90.62, 2.64)},
        "InputAware": {"No Defense": (94.33, 99.60), "NAD": (93.02, 6.08),
                       "I-BAU": (88.35, 99.13), "ANP": (91.97, 1.52), "CLP": (90.55, 1.27),
                       "C&C (Ours)": (93.14, 0.94)},
        "WaNet": {"No Defense": (93.71, 99.32), "NAD": (93.17, 0.90), "I-BAU": (81.60, 0.63),
                  "ANP": (91.55, 0.34), "CLP": (89.68, 1.64), "C&C (Ours)": (91.51, 1.79)},
        "Trojan": {"No Defense": (93.58, 99.99), "NAD": (90.01, 4.42), "I-BAU": (82.14, 13.38),
                   "ANP": (92.64, 2.25), "CLP": (90.34, 1.42), "C&C (Ours)": (91.39, 1.08)},
        "CLA": {"No Defense": (93.22, 99.99), "NAD": (91.71, 1.85), "I-BAU": (81.45, 9.47),
                "ANP": (90.27, 7.18), "CLP": (89.18, 2.04), "C&C (Ours)": (92.01, 2.13)},
        "Average": {"No Defense": (93.74, 99.42), "NAD": (91.43, 4.68), "I-BAU": (83.20, 38.49),
                    "ANP": (90.53, 2.26), "CLP": (89.33, 2.35), "C&C (Ours)": (91.82, 2.18)},
    },
    "all-to-all": {
        "BadNet A2A": {"No Defense": (93.70, 91.12), "NAD": (92.32, 3.31),
                       "I-BAU": (85.19, 6.64), "ANP": (91.61, 0.88), "CLP": (86.67, 1.88),
                       "C&C (Ours)": (92.50, 1.13)},
        "Blended A2A": {"No Defense": (93.59, 92.59), "NAD": (89.49, 1.02),
                        "I-BAU": (84.38, 2.30), "ANP": (85.50, 7.99), "CLP": (88.15, 2.01),
                        "C&C (Ours)": (91.37, 1.83)},
        "InputAware A2A": {"No Defense": (94.01, 91.79), "NAD": (94.10, 2.63),
                           "I-BAU": (89.55, 1.42), "ANP": (92.46, 1.27), "CLP": (92.22, 1.41),
                           "C&C (Ours)": (93.45, 1.87)},
        "WaNet A2A": {"No Defense": (93.74, 92.18), "NAD": (93.33, 1.85),
                      "I-BAU": (85.95, 1.77), "ANP": (90.64, 0.92), "CLP": (89.98, 1.37),
                      "C&C (Ours)": (92.49, 1.72)},
        "Average": {"No Defense": (93.76, 91.92), "NAD": (92.31, 2.20), "I-BAU": (86.27, 3.03),
                    "ANP": (90.05, 2.77), "CLP": (89.26, 1.67), "C&C (Ours)": (92.45, 1.64)},
    },
}

# Table 4, GTSRB half (ResNet-18). The CIFAR-100 half is not transcribed: kcc has no
# CIFAR-100 zoo entry.
TABLE_4_COLUMNS = ("No Defense", "CLP", "C&C (Ours)")
TABLE_4_GTSRB = {
    "BadNet": {"No Defense": (97.17, 97.20), "CLP": (98.70, 8.52), "C&C (Ours)": (97.70, 2.96)},
    "BadNet A2A": {"No Defense": (98.97, 95.40), "CLP": (97.65, 0.48),
                   "C&C (Ours)": (96.32, 5.76)},
    "InputAware": {"No Defense": (98.99, 98.81), "CLP": (98.85, 7.72),
                   "C&C (Ours)": (98.94, 0.00)},
    "InputAware A2A": {"No Defense": (98.45, 96.97), "CLP": (95.87, 15.61),
                       "C&C (Ours)": (98.59, 0.14)},
    "Average": {"No Defense": (98.40, 97.10), "CLP": (97.77, 8.08), "C&C (Ours)": (97.89, 2.22)},
}

# Table 7: original attacks without defense, and original / C&C-aware adaptive attacks under C&C.
TABLE_7_COLUMNS = ("No Defense", "Orig. Att.", "Adap. Att.")
TABLE_7 = {
    "BadNet": {"No Defense": (94.13, 97.96), "Orig. Att.": (92.27, 4.52),
               "Adap. Att.": (92.58, 3.79)},
    "Blended": {"No Defense": (93.45, 99.67), "Orig. Att.": (90.62, 2.64),
                "Adap. Att.": (89.78, 2.94)},
    "InputAware": {"No Defense": (94.33, 99.60), "Orig. Att.": (93.14, 0.94),
                   "Adap. Att.": (92.22, 3.29)},
    "WaNet": {"No Defense": (93.71, 99.32), "Orig. Att.": (91.51, 1.79),
              "Adap. Att.": (91.58, 1.64)},
}

# Table 8: ablation of the scaling and fine-tuning steps.
TABLE_8_COLUMNS = ("Scaling Only", "F.T. Only", "Full C&C")
TABLE_8 = {
    "BadNet": {"Scaling Only": (92.01, 14.29), "F.T. Only": (93.93, 96.70),
               "Full C&C": (92.27, 4.52)},
    "Blended": {"Scaling Only": (88.58, 10.83), "F.T. Only": (93.41, 85.01),
                "Full C&C": (90.62, 2.64)},
    "InputAware": {"Scaling Only": (92.40, 1.50), "F.T. Only": (93.70, 99.88),
                   "Full C&C": (93.13, 0.94)},
    "WaNet": {"Scaling Only": (88.14, 3.04), "F.T. Only": (94.01, 78.88),
              "Full C&C": (91.51, 1.79)},
}

# The paper's protocol where it bears on a comparison (Sect. 5).
PROTOCOL = ("ResNet-18 (11.17M parameters) trained 100-200 epochs; C&C with tau_scale = 4, "
            "5,120 synthetic images from 500 Adam steps, 5 epochs of BN-only distillation; "
            "NAD, ANP and I-BAU get 1% of the clean training data")

FIGURE_CLAIMS = {
    "Figure 1": ("WaNet, ResNet-18 on CIFAR-10: as tau_scale decreases, h_trigger shrinks towards "
                 "h_clean while h_clean shows no significant change."),
    "Figure 3": ("ResNet-18: ASR steadily decreases as tau_scale is lowered while ACC is largely "
                 "preserved; some ACC drop appears when aiming at very low ASR."),
}
