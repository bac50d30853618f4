"""Matrix multiplication rank: decompose the <n,m,p> matrix multiplication tensor into few rank-one terms.

Each term r is one multiplication: (sum_a U[r][a] * A_a) * (sum_b V[r][b] * B_b),
added with weights W[r][c] to the entries C_c of the product (A is n×m, B is
m×p, indices row-major; W indexes C transposed: c = k*n + i for C[i][k]).
"""


# EVOLVE-BLOCK-START
def decompose(n, m, p):
    """The schoolbook algorithm: one term per product A[i][j] * B[j][k] (rank n*m*p)."""
    u, v, w = [], [], []
    for i in range(n):
        for j in range(m):
            for k in range(p):
                u.append([1 if a == i * m + j else 0 for a in range(n * m)])
                v.append([1 if b == j * p + k else 0 for b in range(m * p)])
                w.append([1 if c == k * n + i else 0 for c in range(p * n)])
    return u, v, w
# EVOLVE-BLOCK-END
