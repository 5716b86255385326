"""RecBole's SASRec on our exact `_full` training data, for the side-by-side speed comparison.

Run with the Python of a separate venv holding recbole==1.2.1, numpy<2, pandas<2.2 (RecBole does not start with
NumPy 2); `starec speed classical --recbole-python PATH` exports the data and calls this file. It prints one JSON
line: seconds per training epoch under the same model size as our SASRec (CE loss, dim 64, 2 layers, 2 heads).
"""

import json
import sys
import time


def main(data_dir: str, epochs: int, threads: int) -> None:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer

    torch.set_num_threads(threads)
    config = Config(model="SASRec", dataset="starec", config_dict={
        "data_path": data_dir, "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 40,
        "loss_type": "CE", "train_neg_sample_args": None, "hidden_size": 64, "inner_size": 64, "n_layers": 2,
        "n_heads": 2, "train_batch_size": 64, "epochs": epochs, "eval_step": 0, "device": "cpu",
        "use_gpu": False, "show_progress": False, "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO",
                                                               "mode": "full"}})
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    trainer = Trainer(config, SASRec(config, train.dataset).to("cpu"))
    started = time.perf_counter()
    for epoch in range(epochs):
        trainer._train_epoch(train, epoch, show_progress=False)
    seconds = (time.perf_counter() - started) / epochs
    print(json.dumps({"recbole_sasrec_seconds_per_epoch": seconds, "epochs_timed": epochs, "threads": threads,
                      "training_sequences": len(train.dataset)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
