"""``toolkit train-t2t``."""

from __future__ import annotations

from toolkit.cli._common import positive_int, schedule_args


def register(sub) -> None:
    p = sub.add_parser("train-t2t", help="fine-tune an encoder-decoder text-to-text (generate the label word)",
                        description="Warm-start an EncoderDecoderModel from two encoders (or load --model, a seq2seq "
                                    "checkpoint) and fine-tune it to generate the task's label word, on the train "
                                    "split only; resumes from the last checkpoint in --out.")
    p.add_argument("--task", required=True, help="sst2, mrpc, cola, rte or agnews")
    p.add_argument("--encoder", default="all-MiniLM-L6-v2", help="encoder checkpoint (packaged name, folder, hub id)")
    p.add_argument("--decoder", help="decoder checkpoint (an encoder to warm-start from; default: --encoder)")
    p.add_argument("--decoder-layers", type=positive_int, help="keep only the decoder checkpoint's first k layers")
    p.add_argument("--model", help="fine-tune this seq2seq checkpoint (T5, BART ...) instead of warm-starting")
    p.add_argument("--out", required=True, help="run folder; final weights go to <out>/final")
    schedule_args(p, lr=1e-4, layers=False)
    p.add_argument("--data-dir")
    p.set_defaults(fn=run)


def run(a) -> int:
    from toolkit.nn.seq2seq.train import Seq2SeqTrainConfig, train_seq2seq

    cfg = Seq2SeqTrainConfig(task=a.task, output_dir=a.out, encoder=a.encoder, decoder=a.decoder or a.encoder,
                             decoder_layers=a.decoder_layers, model=a.model, epochs=a.epochs, max_steps=a.max_steps,
                             learning_rate=a.lr, batch_size=a.batch_size, train_limit=a.train_limit, seed=a.seed,
                             bf16=a.bf16, data_dir=a.data_dir, max_length=a.max_length)
    print(f"final weights: {train_seq2seq(cfg)}")
    return 0
