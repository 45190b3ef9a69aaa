"""Write the task datasets beside this file from the copies scikit-learn bundles (no download):

- ``diabetes.csv`` (regression): scikit-learn's diabetes set, unscaled, with a ``patient_id`` and ``sex`` as text;
- ``wine.csv`` (multiclass): scikit-learn's wine set, the class as the text ``cultivar_a``..``cultivar_c``.

    python tests/data/tasks/make_data.py
"""

from pathlib import Path

from sklearn.datasets import load_diabetes, load_wine

HERE = Path(__file__).resolve().parent


def main() -> None:
    diabetes = load_diabetes(as_frame=True, scaled=False).frame
    diabetes.insert(0, "patient_id", range(1, len(diabetes) + 1))
    diabetes["sex"] = diabetes["sex"].map({1.0: "female", 2.0: "male"})
    diabetes.to_csv(HERE / "diabetes.csv", index=False)
    wine = load_wine(as_frame=True).frame
    wine.insert(0, "wine_id", range(1, len(wine) + 1))
    wine["target"] = wine["target"].map({0: "cultivar_a", 1: "cultivar_b", 2: "cultivar_c"})
    wine.rename(columns={"target": "cultivar", "od280/od315_of_diluted_wines": "od280_od315"}).to_csv(
        HERE / "wine.csv", index=False)


if __name__ == "__main__":
    main()
