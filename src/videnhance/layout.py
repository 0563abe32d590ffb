"""Where every file under `results/` lives: the one home of the layout that the Snakemake rules,
`pipeline.run_video` (whose work folder mirrors `results/<video>/`), the report and the failed-run
report share. Torch-free, and paths are plain strings, so Snakemake patterns work as they are:
`Results("results").video("{video}").meta` is `"results/{video}/meta.json"`.

    results/
      <video>/           meta.json, input.mkv (benchmark), frames.npz, pairs.npz, model.pt,
                         fine_tune.history.csv, verdict.json, infer/<which>[.part<k>].mkv,
                         enhanced.<ext>, side_by_side.mp4, scores[.part<k>].csv, crops.png,
                         psnr_per_frame.png, logs/<step>.log, benchmarks/<step>.tsv
      base/              x<scale>.pt: the base model of each scale, shared by its videos
      pretrained/        <arch>_x<scale>.pt and its history: `pretrain`'s output
      report/            summary.csv/.md/.html, gains.png, run.json, report.html
"""

from __future__ import annotations

from dataclasses import dataclass

WHICH = ("enhanced", "milestone", "single_frame")  # the models `infer` runs: fine-tuned, base, base's single frame


@dataclass(frozen=True)
class VideoFiles:
    """One video's files, under `folder` (`results/<video>`, or `run_video`'s work folder)."""

    folder: str

    def _path(self, name: str) -> str:
        return f"{self.folder}/{name}"

    @property
    def meta(self) -> str:
        return self._path("meta.json")

    @property
    def input_video(self) -> str:
        """Benchmark mode: the degraded copy of the ground truth the pipeline enhances."""
        return self._path("input.mkv")

    @property
    def frames(self) -> str:
        return self._path("frames.npz")

    @property
    def pairs(self) -> str:
        return self._path("pairs.npz")

    @property
    def base(self) -> str:
        """`run_video`'s own copy of the base model (the workflow shares `Results.base(scale)`)."""
        return self._path("base.pt")

    @property
    def model(self) -> str:
        return self._path("model.pt")

    @property
    def history(self) -> str:
        return self._path("fine_tune.history.csv")

    @property
    def verdict(self) -> str:
        return self._path("verdict.json")

    def infer(self, which: str = "enhanced", part: int | str | None = None) -> str:
        """`infer`'s lossless output for `which` model, or one part of it (a long video)."""
        return self._path(f"infer/{which}.mkv" if part is None else f"infer/{which}.part{part}.mkv")

    @property
    def enhanced(self) -> str:
        return self.infer("enhanced")

    @property
    def milestone(self) -> str:
        return self.infer("milestone")

    @property
    def single_frame(self) -> str:
        return self.infer("single_frame")

    def deliverable(self, ext: str) -> str:
        """The enhanced video with the source's audio and subtitles, in the `encode.container`."""
        return self._path(f"enhanced.{ext}")

    @property
    def side_by_side(self) -> str:
        return self._path("side_by_side.mp4")

    def scores(self, part: int | str | None = None) -> str:
        return self._path("scores.csv" if part is None else f"scores.part{part}.csv")

    @property
    def crops(self) -> str:
        return self._path("crops.png")

    @property
    def per_frame(self) -> str:
        return self._path("psnr_per_frame.png")

    def log(self, step: str) -> str:
        return self._path(f"logs/{step}.log")

    def benchmark(self, step: str) -> str:
        return self._path(f"benchmarks/{step}.tsv")


@dataclass(frozen=True)
class Results:
    """The results folder of a run (`results` in the config)."""

    root: str
    SHARED = ("base", "pretrained", "report")  # the folders under the root that are not videos

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", str(self.root).rstrip("/") or ".")

    def video(self, video: str) -> VideoFiles:
        return VideoFiles(f"{self.root}/{video}")

    def base(self, scale: int | str) -> str:
        return f"{self.root}/base/x{scale}.pt"

    def base_log(self, scale: int | str) -> str:
        return f"{self.root}/base/logs/x{scale}.log"

    def pretrained(self, arch: str, scale: int | str, what: str = "pt") -> str:
        """`pretrain`'s files: `what` = pt (the model), history.csv, log, tsv (its benchmark)."""
        name = f"{arch}_x{scale}"
        return {"pt": f"{self.root}/pretrained/{name}.pt",
                "history.csv": f"{self.root}/pretrained/{name}.history.csv",
                "log": f"{self.root}/pretrained/logs/{name}.log",
                "tsv": f"{self.root}/pretrained/benchmarks/{name}.tsv"}[what]

    def report(self, name: str) -> str:
        """The run's report files: summary.csv, summary.md, summary.html, gains.png, run.json,
        report.html (Snakemake's), logs/report.log."""
        return f"{self.root}/report/{name}"
