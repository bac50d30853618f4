"""Matrix multiplication rank: decompose the <n,m,p> matrix multiplication tensor into few rank-one terms.

Each term r is one multiplication: (sum_a U[r][a] * A_a) * (sum_b V[r][b] * B_b),
added with weights W[r][c] to the entries C_c of the product (A is n×m, B is
m×p, indices row-major; W indexes C transposed: c = k*n + i for C[i][k]).

The search below is a random walk on the flip graph (Kauers and Moosbauer,
"Flip graphs for matrix multiplication", 2022), kept to coefficients in
{-1, 0, 1}. A term is a triple of factors (x, y, z). Two terms that share a
factor up to sign can be rewritten without changing their sum (a flip):

    f⊗x⊗y + f⊗x'⊗y'  =  f⊗(x + s·x')⊗y + f⊗x'⊗(y' - s·y)     for s = ±1

and two terms that share two factors up to sign merge into one (a reduction),
which lowers the rank. Flips move between decompositions of the same rank;
the walk keeps flipping and takes every reduction it meets.
"""

import random


def schoolbook(n, m, p):
    """One term per product A[i][j] * B[j][k]: the decomposition of rank n*m*p."""
    terms = []
    for i in range(n):
        for j in range(m):
            for k in range(p):
                x = tuple(int(a == i * m + j) for a in range(n * m))
                y = tuple(int(b == j * p + k) for b in range(m * p))
                z = tuple(int(c == k * n + i) for c in range(p * n))
                terms.append((x, y, z))
    return terms


def sign(v):
    """The sign of the first nonzero entry of v (0 for the zero vector)."""
    for e in v:
        if e:
            return 1 if e > 0 else -1
    return 0


def canonical(v):
    """v scaled by ±1 so that its first nonzero entry is positive: equal up to sign means equal here."""
    s = sign(v)
    return tuple(s * e for e in v)


def combine(u, v, s):
    """u + s·v."""
    return tuple(a + s * b for a, b in zip(u, v, strict=True))


def others(pos):
    """The positions of the other two factors of a term, in cyclic order."""
    return (pos + 1) % 3, (pos + 2) % 3


def reduce(terms):
    """Drop terms with a zero factor and merge terms that share two factors up to sign."""
    while True:
        terms = [t for t in terms if all(any(f) for f in t)]
        seen = {}
        for i, t in enumerate(terms):
            for pos in range(3):
                q, r = others(pos)
                key = (pos, canonical(t[pos]), canonical(t[q]))
                j = seen.setdefault(key, i)
                if j == i:
                    continue
                # t_i = ±(t_j's first two factors) ⊗ t_i[r]: fold both signs into the third factor of t_j
                s = sign(t[pos]) * sign(terms[j][pos]) * sign(t[q]) * sign(terms[j][q])
                merged = list(terms[j])
                merged[r] = combine(terms[j][r], t[r], s)
                terms[j] = tuple(merged)
                del terms[i]
                break
            else:
                continue
            break
        else:
            return terms


def as_factors(terms):
    """The factor matrices (U, V, W) of a list of terms."""
    return tuple([list(t[f]) for t in terms] for f in range(3))


# EVOLVE-BLOCK-START
def flip_walk(terms, flips, rng, bound=1):
    """Random flips that keep every coefficient within ±bound. The rank never goes up, so the end is the best met."""
    terms = reduce(list(terms))
    for _ in range(flips):
        i = rng.randrange(len(terms))
        pos = rng.randrange(3)
        q, r = others(pos)
        key = canonical(terms[i][pos])
        partners = [j for j in range(len(terms)) if j != i and canonical(terms[j][pos]) == key]
        if not partners:
            continue
        j = rng.choice(partners)
        lam = sign(terms[i][pos]) * sign(terms[j][pos])  # t_j's shared factor is lam times t_i's
        s = rng.choice((1, -1))
        x = combine(terms[i][q], terms[j][q], s)
        y = combine(tuple(lam * e for e in terms[j][r]), terms[i][r], -s)
        if max(abs(e) for e in x + y) > bound:
            continue
        ti, tj = list(terms[i]), list(terms[j])
        ti[q] = x
        tj[pos], tj[r] = terms[i][pos], y
        terms[i], terms[j] = tuple(ti), tuple(tj)
        terms = reduce(terms)
    return terms


def decompose(n, m, p):
    """Walk the flip graph from the schoolbook algorithm, a few restarts, and keep the best."""
    rng = random.Random(0)
    best = schoolbook(n, m, p)
    for _ in range(2):
        found = flip_walk(schoolbook(n, m, p), 1000 * n * m * p, rng)
        if len(found) < len(best):
            best = found
    return as_factors(best)
# EVOLVE-BLOCK-END
