"""IR → IR rewrites done before lowering (drawings show the graph before them)."""

from __future__ import annotations

import copy

from .ir import IR, RETURNED, Node
from .ops import _align_plan


def fuse(ir: IR) -> IR:
    """Every rewrite, in order: the IR the lowering turns into code."""
    fused = split_unnormalised_sums(unstack_products(unstack_sums(copy.deepcopy(ir))))
    fused = fuse_local(fuse_factorised(fuse_causal_pool(fold_position_scales(fused))))
    fused = fuse_blocked(fuse_halo(fuse_banded(fuse_criss_cross(fused))))
    fused = fuse_linear(fuse_sdpa(fused))
    return merge_duplicates(share_transposed_softmax(fold_content_scales(fused)))


def merge_duplicates(ir: IR) -> IR:
    """A node that repeats an earlier one (the same op, inputs and attributes, no layer of
    its own) is dropped, its readers reading the earlier one: a parameter-free layer named
    once and applied to x in two parts (NonLocal's `pool` before the keys and before the
    values) runs once. Layers with modules stay apart: dropout draws anew each call, and
    BatchNorm counts each call in its running statistics. Runs after the fusions, whose
    "used once" tests it would otherwise change."""
    first: dict[tuple, str] = {}
    for name in [n.name for n in ir.nodes()]:
        node = ir.node(name)  # read again: an earlier merge may have rewired its inputs
        if node.module is not None or node.op == "input":
            continue
        key = (node.op, node.inputs, node.type, repr(node.attrs))
        if key in first:
            ir.redirect(name, first[key])
        else:
            first[key] = name
    return ir


def share_transposed_softmax(ir: IR) -> IR:
    """softmax over the keys of E1(b, a) where double_norm(E1(a, b)) exists too (a
    softmax over its queries, then L1 over its keys): the same logits transposed, and
    the same softmax. The double_norm is split after its softmax, and the aggregates of
    the first read that softmax transposed, so the affinity and its softmax are computed
    once: EMANet's last E step, whose responsibilities z both give the last bases and
    rebuild the input, as in the authors' loop (benchmarks/: emanet)."""
    for soft in [n for n in ir.nodes() if n.op == "softmax_keys"]:
        double = _transposed_double_norm(ir, soft)
        if double is None:
            continue
        first = Node(f"{double.name}_softmax", "softmax_queries", double.inputs, double.type,
                     double.role, double.span)
        ir.add(first)
        ir.replace([double.name], Node(double.name, "l1_keys", (first.name,), double.type,
                                       double.role, double.span, {"eps": double.attrs["eps"]}))
        logits, readers = soft.inputs[0], ir.readers(soft.name)
        ir.redirect(soft.name, first.name)
        ir.graph.remove_node(logits)
        for name in readers:
            agg = ir.node(name)
            ir.replace([name], Node(name, agg.op, agg.inputs, agg.type, agg.role, agg.span,
                                    {**agg.attrs, "weights_transposed": True}, agg.module))
    return ir


def _transposed_double_norm(ir: IR, soft: Node) -> Node | None:
    """The double_norm (softmax over the queries, L1 over the keys) of the transposed
    logits of `soft`, when soft's E1 is read by it alone, soft only by dense aggregates,
    and each head has its own keys on both sides (so the two E1s are transposes)."""
    logits = ir.node(soft.inputs[0])
    if logits.op != "E1" or len(ir.users(logits.name)) != 1 or \
            logits.attrs.get("kv") not in (None, logits.attrs["heads"]):
        return None
    readers = [ir.node(n) for n in ir.users(soft.name) if n != RETURNED]
    if len(readers) != len(ir.users(soft.name)) or any(
            r.op != "aggregate" or r.attrs["memory"] or r.attrs["weight_axes"] !=
            ("B", "M", "Q", "K") or r.inputs[0] != soft.name for r in readers):
        return None
    a = logits.attrs
    swapped = {**a, "q_tokens": a["k_tokens"], "k_tokens": a["q_tokens"],
               "q_feature": a["k_feature"], "k_feature": a["q_feature"]}
    for double in [n for n in ir.nodes() if n.op == "double_norm"]:
        other = ir.node(double.inputs[0])
        if (double.attrs["first"], double.attrs["then"]) == (-2, -1) and other.op == "E1" \
                and other.inputs == logits.inputs[::-1] and other.attrs == swapped:
            return double
    return None


def fold_position_scales(ir: IR) -> IR:
    """E2(...) · s and E4(...) · s → the term with its small position table scaled: the
    factor costs (2H−1)-sized work, not a pass over the [B, M, Q, K] logits."""
    return _fold_scales(ir, ("E2", "E2_table", "E4"))


def fold_content_scales(ir: IR) -> IR:
    """E1(q, k) · s → E1 with its queries scaled: s multiplies [B, M, Q, d] instead of the
    [B, M, Q, K] logits (Q·K ≫ Q·d on a map), as hand-written attention scales q. Run last:
    the fused kernels take their scale from the chain."""
    return _fold_scales(ir, ("E1",))


def _fold_scales(ir: IR, terms: tuple[str, ...]) -> IR:
    """A `scale` right after a term in `terms` (its only user) → the term's own factor."""
    for scale in [n for n in ir.nodes() if n.op == "scale"]:
        term = ir.node(scale.inputs[0])
        if term.op not in terms or len(ir.users(term.name)) != 1:
            continue
        factor = term.attrs.get("factor", 1.0) * scale.attrs["factor"]
        ir.replace([term.name, scale.name], Node(scale.name, term.op, term.inputs, scale.type,
                                                 term.role, term.span,
                                                 {**term.attrs, "factor": factor}))
    return ir


def fuse_criss_cross(ir: IR) -> IR:
    """softmax(E1(q, k) · s) · v over range criss_cross, one head, on [B, C, H, W] maps →
    one `criss_cross` node: the energies along the lines through each position alone,
    HW·(H + W) of them (and of a [B, C, H, W, D] map's three lines), as the CCNet authors
    compute them, instead of a dense HW × HW map with a mask."""
    for agg in [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]]:
        chain = _softmax_chain(ir, agg.inputs[0])
        if chain is None:
            continue
        e1, ranges = ir.node(chain[0]), [ir.node(n) for n in chain if ir.node(n).op == "range"]
        if not ranges or not ranges[0].attrs.get("grid") or len(ranges[0].inputs) > 1:
            continue
        grid = ranges[0].attrs["grid"]
        maps = (e1.inputs[0], e1.inputs[1], agg.inputs[1])
        if e1.attrs["heads"] != 1 or any(ir.node(m).type.names[2:] != grid or
                                         len(ir.node(m).type.names) != 2 + len(grid)
                                         for m in maps):
            continue
        scale = _scale(ir, chain)
        fused = Node(agg.name, "criss_cross", maps, agg.type, "context", agg.span,
                     {"scale": scale})
        ir.replace(chain + [agg.name], fused)
    return ir


def unstack_sums(ir: IR) -> IR:
    """A stack (`stack(t_1, ..., t_K, as = K)`) every use of which sums over K, either
    itself, sum(stack, K) → t_1 + ... + t_K, or its product with weights, sum(w * stack,
    K) → Σ_i w[K = i] · t_i: no stacked copy of the tensors, and no [K, ...] product to
    reduce (SK's selection of branches, whose sum also gives its squeeze; Vision
    Permutator's three branches, 1.06× → ~1.0× fwd+bwd)."""
    for stack in [n for n in ir.nodes() if n.op == "stack" and n.attrs.get("plans") is None]:
        users = ir.users(stack.name)
        rewrites = [None if u == RETURNED else _unstacked(ir, stack, ir.node(u)) for u in users]
        if not rewrites or None in rewrites:
            continue
        for replaced, node in rewrites:
            ir.replace(replaced, node)
        ir.graph.remove_node(stack.name)
    return ir


def _unstacked(ir: IR, stack: Node, user: Node) -> tuple[list[str], Node] | None:
    """A use of `stack` as the stack's parts: (the nodes it replaces, the new node), or
    None if the use needs the stacked tensor."""
    axis = stack.attrs["as"]
    if user.op == "sum" and user.attrs["axes"] == (axis,):
        return [user.name], Node(user.name, "sum_of", stack.inputs, user.type, user.role,
                                 user.span)
    factor = _stack_factor(ir, stack, user)
    if factor is None or user.type.names != stack.type.names or len(ir.users(user.name)) != 1:
        return None
    weights, plan = factor
    total = ir.node(ir.users(user.name)[0]) if ir.users(user.name)[0] != RETURNED else None
    if total is None or total.op != "sum" or total.attrs["axes"] != (axis,):
        return None
    return [user.name, total.name], Node(total.name, "weighted_sum",
                                         (weights.name, *stack.inputs), total.type,
                                         total.role, total.span,
                                         {"plan": plan, "dim": stack.attrs["dim"],
                                          "copies": _slices(ir, stack.inputs)})


def _slices(ir: IR, parts) -> tuple[int, ...]:
    """The indices of the parts that are slices (take, part) of a tensor computed here.
    The stack copied them; a product that keeps such a view for its backward keeps the
    whole tensor alive, so, unstacked, they are copied while gradients are recorded (S2's
    unchanged third of its first linear's output pinned all three thirds). Where something
    else keeps that tensor anyway the copy is wasted, but it is never larger than the
    stack's."""
    return tuple(i for i, name in enumerate(parts) if ir.node(name).op in ("take", "part")
                 and ir.node(ir.node(name).inputs[0]).op != "input")


def _stack_factor(ir: IR, stack: Node, user: Node) -> tuple[Node, dict | None] | None:
    """When `user` multiplies the stack, as it lies (no plan lines it up), by a tensor v
    that has the stacked axis at its full length (so t_i meets v's slice i): v, and the
    plan that lines v up under the product. None for any other use, among them a v the
    same for every t_i (the axis missing, or of length 1: it has no slice i > 0)."""
    if user.op != "arith" or user.attrs["op"] != "*" or len(user.inputs) != 2 or \
            user.inputs[0] == user.inputs[1]:
        return None
    side = user.inputs.index(stack.name)
    other, axis = ir.node(user.inputs[1 - side]), stack.attrs["as"]
    if user.attrs.get(("left", "right")[side]) is not None or \
            axis not in other.type.names or other.type.axis(axis).size != len(stack.inputs):
        return None
    return other, user.attrs.get(("left", "right")[1 - side])


def unstack_products(ir: IR) -> IR:
    """A stack (`stack(t_1, ..., t_K, as = K)`) used only in a product with a tensor v
    that has the axis K: stack(t_1, ..., t_K) * v → stack(t_1 · v[K = 1], ..., t_K ·
    v[K = K]). The products are stacked instead of the factors, so no stacked (and, for
    factors of different axes, broadcast) copy of the t_i is made, and the product saves
    the t_i as they are for its backward: Shuffle Attention's two gates, one a vector per
    channel, were stacked over the whole feature map."""
    for stack in [n for n in ir.nodes() if n.op == "stack" and len(n.inputs) > 1]:
        users = ir.users(stack.name)
        product = ir.node(users[0]) if users[0] != RETURNED else None
        factor = None if len(users) != 1 or product is None else \
            _stack_factor(ir, stack, product)
        if factor is None:
            continue
        other, plan = factor
        axis = stack.attrs["as"]
        rest = product.type.without(axis)
        parts = [ir.node(name).type for name in stack.inputs]
        attrs = {"plan": plan, "dim": product.type.index(axis),
                 "plans": tuple(_align_plan(t, rest) for t in parts),
                 "copies": _slices(ir, stack.inputs),
                 # the products of broadcast (smaller) factors made last: autograd runs
                 # the latest first, and their gradients reduce to the factor's size at
                 # once, before the full-size ones are made
                 "order": tuple(sorted(range(len(parts)), key=lambda i: -len(_wide(parts[i])))),
                 # a product short of an axis (neither factor has it) is broadcast to
                 # the others' before they are stacked
                 "broadcast": any(_wide(rest) - _wide(t) - _wide(other.type) for t in parts)}
        ir.replace([stack.name, product.name],
                   Node(product.name, "stacked_products", (other.name, *stack.inputs),
                        product.type, product.role, product.span, attrs))
    return ir


def _wide(t) -> set[str]:
    """The axes of t longer than 1: those a product with t comes out with."""
    return {a.name for a in t.axes if a.size != 1}


def _aggregates_of_weights(ir: IR) -> list[Node]:
    """The aggregations of [B, M, Q, K] weights computed from the input (not memory)."""
    return [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]
            and n.attrs["weight_axes"] == ("B", "M", "Q", "K")]


def _sum_under(ir: IR, agg: Node, normaliser: str) -> tuple[Node, Node] | None:
    """agg's weights as normaliser(T1 + T2), each used once: (the normaliser, the sum)."""
    norm = ir.node(agg.inputs[0])
    if norm.op != normaliser or len(ir.users(norm.name)) != 1:
        return None
    terms = ir.node(norm.inputs[0])
    if terms.op != "add_terms" or len(ir.users(terms.name)) != 1:
        return None
    return norm, terms


def split_unnormalised_sums(ir: IR) -> IR:
    """identity(T1 + T2) · v over range all → identity(T1) · v + identity(T2) · v (without a
    normaliser the weights' sum distributes over the values), so that each part lowers on
    its own: E1 to the linear form, a position term to its local windows (the lambda
    layer's content and position lambdas: no [B, M, Q, K] weight at all)."""
    for agg in _aggregates_of_weights(ir):
        found = _sum_under(ir, agg, "unnormalised")
        if found is None:
            continue
        norm, terms = found
        if not all(terms.attrs["query"]) or not all(terms.attrs.get("key", (True, True))):
            continue
        parts = []
        for side, term in zip("ab", terms.inputs):
            weights = ir.add(Node(f"{norm.name}_{side}", "unnormalised", (term,), norm.type,
                                  norm.role, norm.span, norm.attrs))
            parts.append(ir.add(Node(f"{agg.name}_{side}", "aggregate",
                                     (weights.name, agg.inputs[1]), agg.type, agg.role,
                                     agg.span, agg.attrs)).name)
        total = Node(agg.name, "arith", tuple(parts), agg.type, agg.role, agg.span,
                     {"op": "+", "left": None, "right": None})
        ir.replace([terms.name, norm.name, agg.name], total)
    return ir


def fuse_factorised(ir: IR) -> IR:
    """softmax(E3(key) + E4(offsets(r) >> ...)) · v over range all → one
    `factorised_aggregate`: e^{K + w} = e^K + e^K (e^w − 1), with e^w − 1 zero beyond the
    radii, so the numerator and denominator are a global sum of e^K ⊙ v plus a local window
    of it (AFT-conv's own form: linear in the positions, not a dense [Q, K] weight)."""
    for agg in _aggregates_of_weights(ir):
        found = _sum_under(ir, agg, "softmax_keys")
        if found is None or found[1].attrs["query"] != (False, True):
            continue
        norm, terms = found
        key, position = (ir.node(i) for i in terms.inputs)
        if key.op != "E3" or key.attrs.get("contexts") or position.op != "E4" or \
                not position.attrs.get("radii") or set(position.attrs["steps"]) != {1} or \
                position.attrs["q_tokens"] != position.attrs["k_tokens"] or \
                len(position.attrs["q_tokens"]) > 2 or \
                any(len(ir.users(n.name)) != 1 for n in (key, position)):
            continue
        if any(ir.node(agg.inputs[1]).type.axis(t).step != 1 for t in agg.attrs["q_tokens"]):
            continue
        attrs = {**{k: agg.attrs[k] for k in ("heads", "kv", "q_tokens", "v_feature",
                                               "sizes_of")},
                 "radii": position.attrs["radii"], "factor": position.attrs.get("factor", 1.0)}
        fused = Node(agg.name, "factorised_aggregate",
                     (key.name, position.inputs[0], agg.inputs[1]), agg.type, "context",
                     agg.span, attrs)
        ir.replace([position.name, terms.name, norm.name, agg.name], fused)
    return ir


def fuse_causal_pool(ir: IR) -> IR:
    """softmax(E3(key)) · v over range causal, on one axis of every position → one
    `causal_pool`: each query's weights are the softmax of the keys up to it, so the
    output is a running sum of e^K ⊙ v over a running sum of e^K (AFT-simple's
    autoregressive form), computed chunk by chunk in O(N·c) memory, not a dense [N, N]
    weight per head."""
    for agg in _aggregates_of_weights(ir):
        chain = _causal_pool_chain(ir, agg)
        if chain is None:
            continue
        key, replaced = chain
        attrs = {k: agg.attrs[k] for k in ("heads", "q_tokens", "v_feature", "sizes_of")}
        fused = Node(agg.name, "causal_pool", (key, agg.inputs[1]), agg.type, "context",
                     agg.span, attrs)
        ir.replace(replaced + [agg.name], fused)
    return ir


def _causal_pool_chain(ir: IR, agg: Node) -> tuple[str, list[str]] | None:
    """agg's weights as softmax_keys(range causal(every_query(E3))), each used once, on
    one token axis of step 1 with as many value heads as heads: (the E3 node, the nodes
    between it and agg)."""
    chain, node = [], ir.node(agg.inputs[0])
    for op in ("softmax_keys", "range", "every_query"):
        if node.op != op or len(ir.users(node.name)) != 1:
            return None
        chain.append(node.name)
        node = ir.node(node.inputs[0])
    rng = ir.node(chain[1])
    if len(rng.inputs) != 1 or not rng.attrs.get("causal") or _structured(rng) or \
            rng.attrs.get("fill") is not None or \
            node.op != "E3" or node.attrs.get("contexts") or len(ir.users(node.name)) != 1 or \
            not _running_sums(ir, agg.attrs, agg):
        return None
    return node.name, chain[::-1]


LOCAL_TERMS = ("E2_offsets", "E2_table", "E4")


def fuse_local(ir: IR) -> IR:
    """identity(T) · v, T a position term that is 0 beyond radii r (E2 or E4 on
    `offsets(r)`), over range all or a window(R ≥ r), the keys the queries' own grid →
    one `local_aggregate` node: T as one weight per offset, [B, M, Q, (2r+1)^n], against
    each query's window of values (zero beyond the map, as keys there do not exist): the
    cost of the window, not of a dense [Q, K] weight (convolution as attention, CoTNet)."""
    for agg in _aggregates_of_weights(ir):
        chain = _local_chain(ir, agg)
        if chain is None:
            continue
        term = ir.node(chain[0])
        attrs = {k: term.attrs[k] for k in ("radii", "heads", "q_tokens") if k in term.attrs}
        attrs.update(term=term.op, factor=term.attrs.get("factor", 1.0), kv=agg.attrs["kv"],
                     q_feature=term.attrs.get("q_feature"), v_feature=agg.attrs["v_feature"],
                     sizes_of=agg.attrs["sizes_of"])
        fused = Node(agg.name, "local_aggregate", (*term.inputs, agg.inputs[1]), agg.type,
                     "context", agg.span, attrs)
        ir.replace(chain + [agg.name], fused)
    return ir


def _local_chain(ir: IR, agg: Node) -> list[str] | None:
    """term → range(window)? → unnormalised ending at agg's weights, each used once, the
    term local and on the queries' own grid; None otherwise."""
    chain, node = [], ir.node(agg.inputs[0])
    if node.op != "unnormalised":
        return None
    while node.op in ("unnormalised", "range"):
        if len(ir.users(node.name)) != 1:
            return None
        chain.append(node.name)
        node = ir.node(node.inputs[0])
    term, ranges = node, [ir.node(n) for n in chain if ir.node(n).op == "range"]
    a = term.attrs
    if term.op not in LOCAL_TERMS or len(ir.users(term.name)) != 1 or not a.get("radii") \
            or a.get("key_side") or set(a.get("steps", (1,))) != {1}:
        return None
    if a["q_tokens"] != a["k_tokens"] or agg.attrs["k_tokens"] != a["q_tokens"] \
            or len(a["q_tokens"]) > 2:  # F.unfold's windows: one or two axes
        return None
    for r in ranges:  # a window wider than the radii cuts nothing the term has
        if len(r.inputs) > 1 or r.attrs["causal"] or r.attrs.get("grid") or \
                r.attrs.get("partition") is not None or r.attrs.get("window") is None or \
                r.attrs.get("dilation", 1) != 1 or r.attrs["window"] < max(a["radii"]):
            return None
    value = ir.node(agg.inputs[1]).type
    if any(value.axis(t).step != 1 for t in a["q_tokens"]):
        return None
    return [term.name, *chain[::-1]]


def _scale(ir: IR, chain: list[str]) -> float:
    scale = 1.0
    for name in chain:
        if ir.node(name).op == "scale":
            scale *= ir.node(name).attrs["factor"]
    return scale


def fuse_sdpa(ir: IR) -> IR:
    """softmax(E1(q, k) · s) · v over range all/causal → one `sdpa` node, which lowers to
    torch's fused scaled_dot_product_attention.

    Only where q, k and v keep their features on the last axis ([B, N, D]): from a
    channels-first map the heads layout is a transposed view, which sends the CPU kernel
    down its slow path (benchmarks/: Non-local 1.2× slower fused than unfused)."""
    for agg in [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]]:
        chain, bias = _softmax_chain(ir, agg.inputs[0]), ()
        if chain is None:
            found = _biased_chain(ir, agg.inputs[0])
            if found is None:
                continue
            chain, bias = found[0], (found[1],)
        e1 = ir.node(chain[0])
        if any(_structured(ir.node(n)) for n in chain):
            continue  # criss-cross, window and partition are masks SDPA is not given here
        features = ((e1.inputs[0], e1.attrs["q_feature"]), (e1.inputs[1], e1.attrs["k_feature"]),
                    (agg.inputs[1], agg.attrs["v_feature"]))
        if any(ir.node(name).type.names[-len(f):] != f for name, f in features):
            continue
        scale = _scale(ir, chain)
        pad, causal = (), False
        for name in chain[1:]:
            n = ir.node(name)
            if n.op == "range":
                pad, causal = n.inputs[1:], n.attrs["causal"]
        attrs = {**_core_attrs(e1, agg), "scale": scale, "causal": causal,
                 "bias": bool(bias)}
        fused = Node(agg.name, "sdpa", (*e1.inputs, agg.inputs[1], *bias, *pad), agg.type,
                     "context", agg.span, attrs)
        ir.replace(chain + [agg.name], fused)
    return ir


def fuse_banded(ir: IR) -> IR:
    """softmax(E1(q, k) · s) · v over range window(R, dilation, causal) on one axis (a
    sequence), a padding mask allowed → one `banded` node: each block of queries against
    the keys its windows reach (runtime.banded_sdpa), so a window of R keys on N tokens
    costs N·R, not the dense mask's N² (Longformer's 512-token windows on 4096 tokens).
    Dropout on the weights becomes SDPA's dropout_p (its own mask: the same distribution,
    not the same draws as the unfused module). Global tokens, when given, make it one dense
    mask at run time (FLOPs count the band); not for pooled keys or shared heads."""
    for agg in [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]]:
        weights, drop = _without_dropout(ir, agg)
        chain = _softmax_chain(ir, weights.name)
        if chain is None:
            continue
        e1, ranges = ir.node(chain[0]), [ir.node(n) for n in chain if ir.node(n).op == "range"]
        if len(ranges) != 1 or not _band_range(ranges[0]) or e1.attrs.get("kv") not in (
                None, e1.attrs["heads"]) or len(e1.attrs["q_tokens"]) != 1:
            continue
        r = ranges[0]
        attrs = {**_core_attrs(e1, agg), "scale": _scale(ir, chain), "causal": r.attrs["causal"],
                 "radius": r.attrs["window"], "dilation": r.attrs.get("dilation", 1),
                 "marked": r.attrs.get("marked", False),
                 "dropout": ir.node(drop[0]).module if drop else None}
        fused = Node(agg.name, "banded", (*e1.inputs, agg.inputs[1], *r.inputs[1:]), agg.type,
                     "context", agg.span, attrs)
        ir.replace(chain + drop + [agg.name], fused)
    return ir


def fuse_blocked(ir: IR) -> IR:
    """softmax(E1(q, k) · s [+ T]) · v over range blocks(b, shift), T a term of q − k alone
    (E4 on offsets: Swin's relative position bias), dropout on the weights allowed → one
    `blocked` node (runtime.blocked_sdpa): SDPA within each block's window, T evaluated on
    one block's b^n × b^n pairs (the same for every block), instead of [Q, K] logits over
    the whole map with a mask. No padding mask, no shared heads (the dense form takes
    those)."""
    for agg in [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]]:
        weights, drop = _without_dropout(ir, agg)
        chain, bias = _softmax_chain(ir, weights.name), None
        if chain is None:
            found = _biased_chain(ir, weights.name)
            if found is None or not _block_term(ir, found[1]):
                continue
            chain, bias = found
        e1, ranges = ir.node(chain[0]), [ir.node(n) for n in chain if ir.node(n).op == "range"]
        if len(ranges) != 1 or ranges[0].attrs.get("blocks") is None or \
                ranges[0].attrs.get("halo") is not None or \
                len(ranges[0].inputs) > 1 or e1.attrs.get("kv") not in (None, e1.attrs["heads"]):
            continue
        blocks = ranges[0].attrs["blocks"]
        if bias is not None:
            ir.node(bias).attrs["block"] = blocks[0]
        attrs = {**_core_attrs(e1, agg), "scale": _scale(ir, chain), "blocks": blocks,
                 "bias": bias is not None, "dropout": ir.node(drop[0]).module if drop else None}
        fused = Node(agg.name, "blocked", (*e1.inputs, agg.inputs[1],
                                           *([bias] if bias else [])), agg.type,
                     "context", agg.span, attrs)
        ir.replace(chain + drop + [agg.name], fused)
    return ir


def fuse_halo(ir: IR) -> IR:
    """softmax(E1(q, k) · s [+ E2(p, R) · s'] [+ E4(...)]) · v (the sum scaled as a whole
    or term by term) over range blocks(b, halo = h): E2's R a per-axis encoding of q − k
    (sinusoid, axis_offsets, distance) under bias-free linear maps, E4 a table of q − k
    (offsets, displacement with radii, or a per-axis encoding), dropout on the weights
    allowed → one `halo` node (runtime.halo_sdpa): each block of queries against the
    window of its keys, the position terms evaluated on one block's pairs (the same for
    every block), instead of [Q, K] logits over the whole map with a mask. The only
    lowering of `edge = zeros`: the [Q, K] form has no keys beyond the map
    (check/base.py refuses such a spec when this pass cannot take it)."""
    for agg in [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]]:
        weights, drop = _without_dropout(ir, agg)
        found = _halo_chain(ir, weights.name)
        if found is None:
            continue
        chain, e1, outer, e2, e4 = found
        ranges = [ir.node(n) for n in chain if ir.node(n).op == "range"]
        if len(ranges) != 1 or ranges[0].attrs.get("halo") is None or \
                len(ranges[0].inputs) > 1 or e1.attrs.get("kv") not in (None, e1.attrs["heads"]):
            continue
        r = ranges[0].attrs
        block = (r["blocks"][0], r["halo"])
        attrs = {**_core_attrs(e1, agg), "scale": _scale(ir, chain), "blocks": r["blocks"],
                 "halo": r["halo"], "zeros": r.get("zeros", False), "relative": e2 is not None,
                 "bias": e4 is not None, "dropout": ir.node(drop[0]).module if drop else None}
        inputs = (*e1.inputs, agg.inputs[1])
        if e2 is not None:  # E2: its queries and its rows, the encoding cut to one block
            ir.node(halo_encoding(ir, e2.name)).attrs["block"] = block
            own = e2.inputs[0] != e1.inputs[0]  # E2's queries other than E1's
            inputs += e2.inputs[:2] if own else e2.inputs[1:2]
            attrs.update(p_feature=e2.attrs["q_feature"] if own else None,
                         factor=e2.attrs.get("factor", 1.0) * outer)
        if e4 is not None:  # E4 stays a node, evaluated on one block's pairs
            encoding = _halo_e4_encoding(ir, e4.name)
            if encoding is not None:
                ir.node(encoding).attrs["block"] = block
            e4.attrs.update(halo_block=block, factor=e4.attrs.get("factor", 1.0) * outer)
            inputs += (e4.name,)
        fused = Node(agg.name, "halo", inputs, agg.type, "context", agg.span, attrs)
        ir.replace(chain + ([e2.name] if e2 is not None else []) + drop + [agg.name], fused)
    return ir


def _halo_chain(ir: IR, name: str):
    """The chain under a halo softmax: (its nodes to replace, from E1 to the softmax, the
    E1 node, the factor scaling the whole sum, the E2 and E4 nodes or None), each node
    used once; None when the weight is not E1 plus at most one E2 and one E4 that the
    halo kernel reads."""
    node, chain, outer = ir.node(name), [], 1.0
    if node.op != "softmax_keys":
        return None
    while node.op in ("softmax_keys", "range", "scale") and len(ir.users(node.name)) == 1:
        chain.append(node.name)
        outer *= node.attrs["factor"] if node.op == "scale" else 1.0
        node = ir.node(node.inputs[0])
    sums, leaves = _summed(ir, node.name)
    e1s = [leaf for leaf in leaves if _e1_chain(ir, leaf) is not None]
    rest = [ir.node(leaf) for leaf in leaves if leaf not in e1s]
    e2 = [n for n in rest if halo_encoding(ir, n.name) is not None]
    e4 = [n for n in rest if _halo_e4(ir, n)]
    if len(e1s) != 1 or len(e2) > 1 or len(e4) > 1 or len(e2) + len(e4) != len(rest):
        return None
    # the chain's scales are E1's and the whole sum's: the kernel's scale is their product
    chain = _e1_chain(ir, e1s[0])[::-1] + sums + chain[::-1]
    return chain, ir.node(chain[0]), outer, (e2 or [None])[0], (e4 or [None])[0]


def _summed(ir: IR, name: str) -> tuple[list[str], list[str]]:
    """A sum of terms, nested add_terms each used once: (the add_terms nodes, the terms)."""
    node = ir.node(name)
    if node.op != "add_terms" or len(ir.users(name)) != 1:
        return [], [name]
    sums, leaves = [name], []
    for side in node.inputs:
        more, terms = _summed(ir, side)
        sums += more
        leaves += terms
    return sums, leaves


def _halo_e4(ir: IR, node: Node) -> bool:
    """An E4 term the halo kernel evaluates on one block's pairs: a table of the offset
    with fixed radii, or a per-axis encoding read by it alone; keys every position."""
    a = node.attrs
    if node.op != "E4" or len(ir.users(node.name)) != 1 or a.get("pairs") is not None or \
            a.get("sized") or set(a.get("steps", (1,))) != {1}:
        return False
    return a.get("radii") is not None or _halo_e4_encoding(ir, node.name) is not None


def _halo_e4_encoding(ir: IR, name: str) -> str | None:
    """The per-axis encoding under an E4 term (None for a table of joint offsets)."""
    return _per_axis_encoding(ir, ir.node(name).inputs[0])


def halo_encoding(ir: IR, name: str) -> str | None:
    """The per-axis encoding under an E2 term that the halo kernel can read one block of."""
    node = ir.node(name)
    if node.op != "E2" or len(ir.users(name)) != 1:
        return None
    return _per_axis_encoding(ir, node.inputs[1])


def _per_axis_encoding(ir: IR, name: str) -> str | None:
    """name ← bias-free linear maps ← sinusoid | axis_offsets | distance, each used once
    only (the encoding is cut to one block's pairs: no other reader may see that)."""
    node = ir.node(name)
    while len(ir.users(node.name)) == 1:
        if node.op in ("sinusoid", "axis_offsets", "distance"):
            return node.name
        if node.op != "linear" or node.attrs.get("bias", False):
            return None
        node = ir.node(node.inputs[0])
    return None


def _block_term(ir: IR, name: str) -> bool:
    """An E4 term read at q − k alone (offsets, displacement, sinusoid): one block's table
    is every block's. Not `pairs` (absolute positions) nor pooled keys."""
    a = ir.node(name).attrs
    return ir.node(name).op == "E4" and a.get("pairs") is None and \
        len(ir.users(name)) == 1 and set(a.get("steps", (1,))) == {1}


def _without_dropout(ir: IR, agg: Node) -> tuple[Node, list[str]]:
    """agg's weights, under the weights' dropout if there is one (used once, not whole
    channels: it becomes SDPA's dropout_p), and that dropout node's name in a list."""
    weights = ir.node(agg.inputs[0])
    if weights.op == "dropout" and not weights.attrs["channels"] and \
            len(ir.users(weights.name)) == 1:
        return ir.node(weights.inputs[0]), [weights.name]
    return weights, []


def _band_range(node: Node) -> bool:
    """A window on the queries' own axis, keys not pooled."""
    a = node.attrs
    return a.get("window") is not None and a.get("grid") is None and \
        a.get("partition") is None and set(a["steps"]) == {1} and \
        set(a.get("q_steps") or (1,)) == {1} and not a.get("centred") and \
        tuple(a["q_tokens"]) == tuple(a["k_tokens"]) and a.get("fill") is None


def fuse_linear(ir: IR) -> IR:
    """l1(E1(q, k) · s) · v, or identity(E1(q, k) · s) · v, over all keys (a padding mask
    allowed) → one `linear_attention` node: q (Kᵀ V) / (q · Σ_k k + eps), linear in the
    number of keys (Katharopoulos et al.'s reordering; exact, the same sums in another
    order). Over `range causal` on one axis of every position (each head its own keys),
    the sums run up to each query: the same node with `causal`, computed chunk by chunk
    (their recurrent form). A windowed range keeps the quadratic form."""
    for agg in [n for n in ir.nodes() if n.op == "aggregate" and not n.attrs["memory"]
                and "Q" in n.attrs["weight_axes"]]:
        chain = _softmax_chain(ir, agg.inputs[0], ("l1_keys", "unnormalised"))
        if chain is None:
            continue
        e1, ranges = ir.node(chain[0]), [ir.node(n) for n in chain if ir.node(n).op == "range"]
        causal = bool(ranges) and ranges[0].attrs["causal"]
        if ranges and _structured(ranges[0]):
            continue
        if causal and not _running_sums(ir, e1.attrs, agg):
            continue  # the masked quadratic form
        normaliser = ir.node(chain[-1])
        attrs = {**_core_attrs(e1, agg), "scale": _scale(ir, chain), "causal": causal,
                 "eps": normaliser.attrs["eps"] if normaliser.op == "l1_keys" else None}
        pad = ranges[0].inputs[1:] if ranges else ()
        fused = Node(agg.name, "linear_attention", (*e1.inputs, agg.inputs[1], *pad), agg.type,
                     "context", agg.span, attrs)
        ir.replace(chain + [agg.name], fused)
    return ir


def _running_sums(ir: IR, attrs: dict, agg: Node) -> bool:
    """Causal sums can run along the positions: one token axis, the queries' own (every
    position), each head with keys of its own (`attrs`: an E1's or an aggregate's)."""
    tokens = attrs["q_tokens"]
    return len(tokens) == 1 and attrs["k_tokens"] == tokens and \
        ir.node(agg.inputs[1]).type.axis(tokens[0]).step == 1 and \
        attrs.get("kv") in (None, attrs["heads"])


def _core_attrs(e1: Node, agg: Node) -> dict:
    """What a fused attention node needs of the E1 and aggregate nodes it replaces."""
    return {**{k: e1.attrs[k] for k in ("heads", "q_tokens", "q_feature", "k_tokens",
                                        "k_feature")}, "kv": e1.attrs.get("kv"),
            "v_feature": agg.attrs["v_feature"], "sizes_of": agg.attrs["sizes_of"]}


def _biased_chain(ir: IR, name: str) -> tuple[list[str], str] | None:
    """softmax((E1(q, k) · s) + T) over range all/causal, T any term of the query and
    the key (ALiBi's slopes times distances, a relative bias table): the chain of nodes to
    replace, from E1 to the softmax, and T, which SDPA adds to its logits as a float mask."""
    node, chain = ir.node(name), []
    if node.op != "softmax_keys":
        return None
    while node.op in ("softmax_keys", "range") and len(ir.users(node.name)) == 1:
        chain.append(node.name)
        node = ir.node(node.inputs[0])
    terms = node
    # (a `-` between terms is a `scale` by −1 on the right one: add_terms always adds)
    if terms.op != "add_terms" or len(ir.users(terms.name)) != 1 \
            or not all(terms.attrs["query"]) or not all(terms.attrs.get("key", (True, True))):
        return None
    chain.append(terms.name)
    for side in (0, 1):
        lower = _e1_chain(ir, terms.inputs[side])
        if lower is not None:
            return lower[::-1] + chain[::-1], terms.inputs[1 - side]
    return None


def _e1_chain(ir: IR, name: str) -> list[str] | None:
    """E1 → scale*, each used once, from the top: the E1 chain under a sum of terms."""
    chain, node = [], ir.node(name)
    while node.op == "scale" and len(ir.users(node.name)) == 1:
        chain.append(node.name)
        node = ir.node(node.inputs[0])
    if node.op != "E1" or len(ir.users(node.name)) != 1:
        return None
    return chain + [node.name]


def _structured(node: Node) -> bool:
    """A range node with a criss-cross, window, partition or blocks mask."""
    return node.op == "range" and any(node.attrs.get(k) is not None
                                      for k in ("grid", "window", "partition", "blocks"))


def _softmax_chain(ir: IR, name: str, last: tuple[str, ...] = ("softmax_keys",)
                   ) -> list[str] | None:
    """The nodes E1 → scale* → range? → softmax (or another normaliser in `last`) ending
    at `name`, each used once."""
    chain = []
    node = ir.node(name)
    if node.op not in last:
        return None
    while True:
        chain.append(node.name)
        if len(ir.users(node.name)) != 1:
            return None
        if node.op == "E1":
            return chain[::-1]
        if node.op not in (*last, "scale", "range") or not node.inputs:
            return None
        node = ir.node(node.inputs[0])
