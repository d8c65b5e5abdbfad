# A tiny matrix to try `harness matrix` in minutes: two methods x two seeds of the --quick
# smoke-test profile (numbers mean nothing), their leaderboard, no figures.
#   harness matrix harness/config/configs/matrix/quick.py --lanes 2
matrix = dict(
    seeds=[0, 1],
    quick=True,
    results="results/matrix_quick",
    work_dirs="work_dirs/matrix_quick",
    controls=False,
    runs=[
        dict(method="baseline"),
        dict(method="adu"),
    ],
    leaderboards=[dict(format="github", out="leaderboard.md")],
)
