"""How models learn, one module each:

- `losses`: L1/MSE/SSIM/VGG-feature losses and the training log's PSNR;
- `learner`: the fastai glue (`fit`: one-cycle, bf16 on CUDA, CSV log, per-epoch checkpoints
  that a killed run resumes from; the callbacks as module-level classes);
- `pretrain`: the base model on photos (and a multi-frame model's branch on synthetic motion);
- `near_scale`: pairs at the scale of use from a model's own output (training and held-out);
- `guard`: the held-out signals, the rule, early stopping per round and the final choice;
- `fine_tune`: one video's fine-tune in rounds behind the guard, and its verdict.
"""
