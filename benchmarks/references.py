"""Numbers to compare against: the paper's rows and independent reference implementations on our data.

NDCG×100, as (NDCG@1, NDCG@10). Paper: STARec (arXiv 2508.18812) Table 2, trained on the full data of each dataset.
Reference: independent implementations run on exactly our data and protocol (ML-1M users 1-2999, the Amazon CDs
subset, 1,000 test users, seed 0): Pop as training counts, BPR from RecBole 1.2.1, the official PyTorch GRU4Rec
(untuned) and a widely used PyTorch SASRec (binary cross-entropy, one negative).
"""

PAPER = {
    "ml-1m": {"pop": (20.50, 49.08), "bpr_sample": (24.50, 50.74), "bpr_full": (33.50, 60.85),
              "gru4rec_sample": (38.00, 64.65), "gru4rec_full": (54.70, 75.47), "sasrec_sample": (42.30, 66.68),
              "sasrec_full": (57.50, 76.51), "llmrank": (None, 56.19), "agentcf": (None, 65.26),
              "starec": (None, 60.87)},
    "amazon-cds": {"pop": (24.10, 47.69), "bpr_sample": (26.70, 50.55), "bpr_full": (46.20, 63.66),
                   "gru4rec_sample": (33.80, 49.82), "gru4rec_full": (60.00, 70.84),
                   "sasrec_sample": (34.90, 49.76), "sasrec_full": (62.30, 79.47), "llmrank": (None, 73.54),
                   "agentcf": (None, 79.15), "starec": (None, 74.90)},
}  # (NDCG@1, NDCG@10); LLM rows: GPT-class backbones; STARec: the paper's SFT-7B row

REFERENCE = {
    "ml-1m": {"random": (5.00, 22.72), "pop": (25.65, 51.56), "bpr_sample": (35.30, 60.46),
              "bpr_full": (36.40, 63.17), "gru4rec_sample": (33.80, 57.45), "gru4rec_full": (44.30, 67.17),
              "sasrec_sample": (42.10, 66.15), "sasrec_full": (48.80, 71.14)},
    "amazon-cds": {"random": (5.00, 22.72), "pop": (14.66, 34.46), "bpr_sample": (9.40, 27.43),
                   "bpr_full": (13.30, 31.63), "gru4rec_sample": (11.00, 28.88), "gru4rec_full": (16.10, 33.67),
                   "sasrec_sample": (13.00, 31.89), "sasrec_full": (19.20, 38.84)},
}
