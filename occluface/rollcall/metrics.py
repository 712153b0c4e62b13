"""Error rate ER and unrecognised rate UR, exactly as Zhu et al. define them for a classroom roll-call.

For one photo with s faces, the attendance list holds every face that was given an identity (al faces); of
those, c_i got their true identity and e_i a wrong one (another student's name, or any name for a stranger):

    ER = e_i / al                      (formula 2; denominator = attendance list length, not faces)
    UR = (s - c_i - e_i) / s           (formula 3; denominator = all faces in the photo)

The paper counts only student faces; our benchmark also puts strangers (people not on the roster) in the photo,
so s counts every face and a stranger left without a name counts as "unrecognised" in UR (and as a correct
rejection in `strangers_rejected`). `student_ur` gives UR over roster members' faces only. An empty attendance
list has ER = 0 (no wrong names were given).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from occluface.errors import OccluFaceError

__all__ = ["er_ur", "aggregate"]

COUNT_KEYS = ("faces", "attendance", "correct", "wrong", "unrecognised", "students", "students_unrecognised",
              "strangers", "strangers_named", "strangers_rejected", "duplicate_identities")


def er_ur(assigned: Sequence[str | None], truth: Sequence[str | None], roster: Iterable[str] | None = None) -> dict:
    """Counts and rates for one photo.

    `assigned[i]` is the name given to face i (None = not named / uncertain); `truth[i]` its real identity, None
    or a name outside `roster` for a stranger. Without `roster`, every non-None truth is a student.
    """
    if len(assigned) != len(truth):
        raise OccluFaceError(f"got {len(assigned)} assigned identities but {len(truth)} true identities")
    roster_set = None if roster is None else set(roster)

    def is_student(t):
        return t is not None and (roster_set is None or t in roster_set)

    s = len(assigned)
    named = [(a, t) for a, t in zip(assigned, truth) if a is not None]
    al = len(named)
    c = sum(1 for a, t in named if a == t)
    e = al - c
    students = sum(1 for t in truth if is_student(t))
    students_named = sum(1 for a, t in zip(assigned, truth) if a is not None and is_student(t))
    strangers = s - students
    strangers_named = al - students_named
    dup = sum(1 for _, n in Counter(a for a, _ in named).items() if n > 1)
    return {
        "faces": s,
        "attendance": al,
        "correct": c,
        "wrong": e,
        "unrecognised": s - c - e,
        "students": students,
        "students_unrecognised": students - students_named,
        "strangers": strangers,
        "strangers_named": strangers_named,
        "strangers_rejected": strangers - strangers_named,
        "duplicate_identities": dup,
        "er": e / al if al else 0.0,
        "ur": (s - c - e) / s if s else 0.0,
        "student_ur": (students - students_named) / students if students else 0.0,
    }


def aggregate(per_image: Sequence[dict]) -> dict:
    """Pool many photos: summed counts with ER/UR recomputed from them (pooled), plus per-photo means."""
    if not per_image:
        raise OccluFaceError("no photos to aggregate")
    total = {k: int(sum(r[k] for r in per_image)) for k in COUNT_KEYS}
    n = len(per_image)
    total.update(
        images=n,
        er=total["wrong"] / total["attendance"] if total["attendance"] else 0.0,
        ur=total["unrecognised"] / total["faces"] if total["faces"] else 0.0,
        student_ur=total["students_unrecognised"] / total["students"] if total["students"] else 0.0,
        accuracy=total["correct"] / total["students"] if total["students"] else 0.0,
        mean_er=sum(r["er"] for r in per_image) / n,
        mean_ur=sum(r["ur"] for r in per_image) / n,
        images_with_duplicates=sum(1 for r in per_image if r["duplicate_identities"] > 0),
    )
    return total
