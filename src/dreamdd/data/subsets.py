"""ImageNet-1K's classes and the pinned class lists of its subsets, with the works that define them.

Every subset is read from an ImageNet layout and keeps only its classes; labels follow the sorted wnid order
(the rule for every image-layout dataset here), so label numbers may differ from an original code's, the class
sets do not. The 1000 wnids and names are ImageNet's LOC_synset_mapping.txt (sorted wnid order, as torchvision's
ImageNet targets, which MTT's class indices refer to).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources


@dataclass(frozen=True)
class Subset:
    name: str
    wnids: tuple[str, ...]  # as the source lists them; dreamdd orders classes by sorted wnid
    source: str


@lru_cache(maxsize=1)
def imagenet_classes() -> dict[str, str]:
    """wnid -> human-readable names (WordNet synonyms, comma-separated) for ImageNet-1K's 1000 classes, sorted."""
    text = (resources.files("dreamdd") / "data" / "imagenet_classes.txt").read_text()
    return dict(line.split("\t", 1) for line in text.splitlines() if line.strip())


def imagenet_wnids() -> list[str]:
    return list(imagenet_classes())


def _mtt(indices: tuple[int, ...]) -> tuple[str, ...]:
    """MTT's subsets are class indices into ImageNet-1K's sorted wnid list."""
    wnids = imagenet_wnids()
    return tuple(wnids[i] for i in indices)


MTT = ("Cazenavette et al., Dataset Distillation by Matching Training Trajectories, CVPR 2022; "
       "github.com/GeorgeCazenavette/mtt-distillation utils.py Config")
FASTAI = "fast.ai's Imagenette (github.com/fastai/imagenette; class folders of imagenette2 / imagewoof2)"
IDC = ("Kim et al., Dataset Condensation via Efficient Synthetic-Data Parameterization, ICML 2022; "
       "github.com/snu-mllab/Efficient-Dataset-Condensation misc/class100.txt (ImageNet-10: its first 10 lines, "
       "as data.py find_subclasses takes them)")

# IDC's misc/class100.txt, in its order (commit ceac95ab96d5127b5d24fb62f86c1390d213031f).
IDC_CLASS100 = (
    "n02869837", "n01749939", "n02488291", "n02107142", "n13037406", "n02091831", "n04517823", "n04589890",
    "n03062245", "n01773797", "n01735189", "n07831146", "n07753275", "n03085013", "n04485082", "n02105505",
    "n01983481", "n02788148", "n03530642", "n04435653", "n02086910", "n02859443", "n13040303", "n03594734",
    "n02085620", "n02099849", "n01558993", "n04493381", "n02109047", "n04111531", "n02877765", "n04429376",
    "n02009229", "n01978455", "n02106550", "n01820546", "n01692333", "n07714571", "n02974003", "n02114855",
    "n03785016", "n03764736", "n03775546", "n02087046", "n07836838", "n04099969", "n04592741", "n03891251",
    "n02701002", "n03379051", "n02259212", "n07715103", "n03947888", "n04026417", "n02326432", "n03637318",
    "n01980166", "n02113799", "n02086240", "n03903868", "n02483362", "n04127249", "n02089973", "n03017168",
    "n02093428", "n02804414", "n02396427", "n04418357", "n02172182", "n01729322", "n02113978", "n03787032",
    "n02089867", "n02119022", "n03777754", "n04238763", "n02231487", "n03032252", "n02138441", "n02104029",
    "n03837869", "n03494278", "n04136333", "n03794056", "n03492542", "n02018207", "n04067472", "n03930630",
    "n03584829", "n02123045", "n04229816", "n02100583", "n03642806", "n04336792", "n03259280", "n02116738",
    "n02108089", "n03424325", "n01855672", "n02090622"
)


@lru_cache(maxsize=1)
def subsets() -> dict[str, Subset]:
    return {s.name: s for s in (
        Subset("imagenette", ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
                              "n03417042", "n03425413", "n03445777", "n03888257"), FASTAI),
        Subset("imagewoof", ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294",
                             "n02099601", "n02105641", "n02111889", "n02115641"), FASTAI),
        Subset("imagefruit", _mtt((953, 954, 949, 950, 951, 957, 952, 945, 943, 948)), MTT),
        Subset("imageyellow", _mtt((309, 986, 954, 951, 987, 779, 599, 291, 72, 11)), MTT),
        Subset("imagemeow", _mtt((281, 282, 283, 284, 285, 291, 292, 290, 289, 287)), MTT),
        Subset("imagesquawk", _mtt((84, 130, 88, 144, 145, 22, 96, 9, 100, 89)), MTT),
        Subset("imagenet-10", IDC_CLASS100[:10], IDC),
        Subset("imagenet-100", IDC_CLASS100, IDC),
    )}
