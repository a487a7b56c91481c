"""The "fancy ML black box" of the seed: a classifier that burns CPU on
every row through DataFrame.apply, as the seed's does, so that the job is
compute-bound and parallelizing it pays. Deterministic: the same row always
gets the same class and score, whichever process classifies it."""

import hashlib
import os

#: Rounds of hashing per row (~1 ms of CPU per row here), unless the
#: environment's CLASSIFIER_WORK says otherwise (tests make it cheap). Read
#: per call, so every process of a job burns the same.
DEFAULT_WORK = 2000
CLASSES = ("low", "medium", "high", "extreme")


def classify_row(row, work):
    digest = "|".join(row.values.tolist()).encode()
    for _ in range(work):
        digest = hashlib.sha256(digest).digest()
    score = int.from_bytes(digest[:4], "big") / 2**32
    return CLASSES[int(score * len(CLASSES))], f"{score:.6f}"


def classify_df(df):
    """Adds the columns "class" and "score" to `df`, in place (the seed's
    classify_df(df) contract); returns df as well."""
    work = int(os.environ.get("CLASSIFIER_WORK", DEFAULT_WORK))
    result = df.apply(classify_row, axis=1, result_type="expand", args=(work,))
    df["class"] = result[0]
    df["score"] = result[1]
    return df
