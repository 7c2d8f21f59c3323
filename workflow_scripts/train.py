"""Rules pretrain and train: one hand3d.train run (DDP under torchrun when the job has more than one GPU)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.runlog import logged
    from hand3d.train import Settings, launch

    with logged(smk.log[0]):
        data = [smk.input.data] if isinstance(smk.input.data, str) else list(smk.input.data)
        settings = Settings(
            stage="pretrain" if smk.rule == "pretrain" else "train",
            hand_model=smk.input.hand_model,
            datasets=dict(zip(data, smk.params.weights, strict=True)),
            init=smk.input.get("init"),
            threads=smk.threads,
            **smk.params.settings,
        )
        processes = max(1, int(smk.resources.get("gpu", 1)))
        launch(settings, smk.output.model, smk.output.history, smk.params.state_dir, processes)


if __name__ == "__main__":
    main(snakemake)
