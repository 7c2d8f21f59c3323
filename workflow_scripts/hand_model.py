"""Rule hand_model: the user's MANO pickle converted safely, or the procedural hand, as MANO_RIGHT.npz."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.hand_model import build_hand_model
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        build_hand_model(smk.output.npz, smk.output.obj, mano_pkl=smk.params.mano_pkl)


if __name__ == "__main__":
    main(snakemake)
