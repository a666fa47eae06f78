//! The step graph's algorithms, in one place: dependency cycles (as loops a
//! reader can follow), a deterministic topological order, levels, the
//! longest path by weight, and reachability.
//!
//! Steps are indexes `0..n` (file order) and edges are `needs`: `needs[i]`
//! lists the steps `i` waits for. Every walk keeps its own stack on the heap,
//! never recursion, so a 200,000-step chain or loop costs memory in
//! proportion to its size and cannot overflow the thread's stack. A leaf
//! module: the validator and the plan use it.

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};

/// A directed graph of steps by their `needs`.
#[derive(Debug, Clone)]
pub struct Dag {
    needs: Vec<Vec<usize>>,
    dependents: Vec<Vec<usize>>,
}

impl Dag {
    /// The graph in which step `i` needs the steps `needs[i]`, kept in the
    /// given order (which breaks ties below). Indexes out of range are left
    /// out.
    pub fn new(mut needs: Vec<Vec<usize>>) -> Dag {
        let n = needs.len();
        for ns in &mut needs {
            ns.retain(|&j| j < n);
        }
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, ns) in needs.iter().enumerate() {
            for &j in ns {
                dependents[j].push(i);
            }
        }
        Dag { needs, dependents }
    }

    /// The number of steps.
    pub fn len(&self) -> usize {
        self.needs.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    /// The steps `i` needs directly.
    pub fn needs(&self, i: usize) -> &[usize] {
        &self.needs[i]
    }

    /// Every dependency loop of two steps or more, one per strongly connected
    /// component: a shortest loop from the component's first step back to it
    /// following `needs`, that step at both ends (`[a, b, a]`). Components
    /// come in the order of their first step.
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        let mut components: Vec<Vec<usize>> = self
            .components()
            .into_iter()
            .filter(|c| c.len() > 1)
            .map(|mut c| {
                c.sort_unstable();
                c
            })
            .collect();
        components.sort_unstable();
        components.iter().map(|c| self.shortest_loop(c)).collect()
    }

    /// Strongly connected components (Tarjan's algorithm, with the call
    /// stack as a vector of (step, next edge)).
    fn components(&self) -> Vec<Vec<usize>> {
        const UNSEEN: usize = usize::MAX;
        let n = self.len();
        let mut order = vec![UNSEEN; n];
        let mut low = vec![0usize; n];
        let mut on_stack = vec![false; n];
        let mut stack: Vec<usize> = Vec::new();
        let mut calls: Vec<(usize, usize)> = Vec::new();
        let mut next = 0usize;
        let mut out = Vec::new();
        for root in 0..n {
            if order[root] != UNSEEN {
                continue;
            }
            order[root] = next;
            low[root] = next;
            next += 1;
            stack.push(root);
            on_stack[root] = true;
            calls.push((root, 0));
            while let Some(top) = calls.last_mut() {
                let (v, edge) = *top;
                if let Some(&w) = self.needs[v].get(edge) {
                    top.1 += 1;
                    if order[w] == UNSEEN {
                        order[w] = next;
                        low[w] = next;
                        next += 1;
                        stack.push(w);
                        on_stack[w] = true;
                        calls.push((w, 0));
                    } else if on_stack[w] {
                        low[v] = low[v].min(order[w]);
                    }
                    continue;
                }
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == order[v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(component);
                }
            }
        }
        out
    }

    /// A shortest loop from `component[0]` back to itself through the
    /// (sorted) `component`, by breadth-first search. Its scratch space is
    /// the size of the component, not of the graph: a playbook may hold
    /// many small loops.
    fn shortest_loop(&self, component: &[usize]) -> Vec<usize> {
        let start = component[0];
        let mut prev: HashMap<usize, usize> = HashMap::with_capacity(component.len());
        let mut queue = VecDeque::from([start]);
        while let Some(cur) = queue.pop_front() {
            for &next in &self.needs[cur] {
                if component.binary_search(&next).is_err() {
                    continue;
                }
                if next == start {
                    // Walk the predecessors back to `start`, then read forwards.
                    let mut chain = vec![cur];
                    let mut at = cur;
                    while let Some(&p) = prev.get(&at) {
                        chain.push(p);
                        at = p;
                    }
                    chain.reverse();
                    chain.push(start);
                    return chain;
                }
                if let Entry::Vacant(e) = prev.entry(next) {
                    e.insert(cur);
                    queue.push_back(next);
                }
            }
        }
        vec![start, start]
    }

    /// The steps for which `include` holds, in an order where every step
    /// comes after the steps it needs, the lowest index first among those
    /// ready (Kahn's algorithm). A step that needs an excluded step, or
    /// sits on a loop, is left out, and so is everything after it.
    pub fn order(&self, include: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut pending: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = (0..self.len())
            .filter(|&i| pending[i] == 0 && include(i))
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(self.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &d in &self.dependents[i] {
                pending[d] -= 1;
                if pending[d] == 0 && include(d) {
                    ready.push(Reverse(d));
                }
            }
        }
        order
    }

    /// The level of each step of `order` (an [`Dag::order`]): 0 for a step
    /// that needs nothing, else one more than the deepest step it needs.
    /// Steps not in `order` get 0.
    pub fn levels(&self, order: &[usize]) -> Vec<usize> {
        let mut level = vec![0usize; self.len()];
        for &i in order {
            level[i] = self.needs[i]
                .iter()
                .map(|&n| level[n] + 1)
                .max()
                .unwrap_or(0);
        }
        level
    }

    /// The heaviest path through the steps of `order` (an [`Dag::order`]),
    /// first to last, and its total weight. Among equal weights the path of
    /// more steps wins, then the earlier need (in `needs` order) and the
    /// earlier end (in `order`).
    pub fn longest_path(
        &self,
        order: &[usize],
        weight: impl Fn(usize) -> u128,
    ) -> (Vec<usize>, u128) {
        let mut dist: Vec<(u128, usize)> = vec![(0, 0); self.len()];
        let mut pred: Vec<Option<usize>> = vec![None; self.len()];
        let heaviest = |dist: &[(u128, usize)], candidates: &mut dyn Iterator<Item = usize>| {
            candidates.fold(None::<usize>, |best, n| match best {
                Some(b) if dist[b] >= dist[n] => Some(b),
                _ => Some(n),
            })
        };
        for &i in order {
            let best = heaviest(&dist, &mut self.needs[i].iter().copied());
            let (base, count) = best.map_or((0, 0), |b| dist[b]);
            dist[i] = (base + weight(i), count + 1);
            pred[i] = best;
        }
        let end = heaviest(&dist, &mut order.iter().copied());
        let mut path = Vec::new();
        let mut at = end;
        while let Some(i) = at {
            path.push(i);
            at = pred[i];
        }
        path.reverse();
        (path, end.map_or(0, |e| dist[e].0))
    }
}

/// Scratch space for repeated reachability questions on one [`Dag`]: each
/// question marks what it visited with a fresh stamp instead of clearing.
#[derive(Debug, Clone)]
pub struct Reach {
    marks: Vec<u32>,
    stamp: u32,
}

impl Reach {
    /// Scratch space for a graph of `n` steps.
    pub fn new(n: usize) -> Reach {
        Reach {
            marks: vec![0; n],
            stamp: 0,
        }
    }

    /// Whether `from` needs `target`, directly or through other steps.
    pub fn needs(&mut self, dag: &Dag, from: usize, target: usize) -> bool {
        // Most questions are about a direct need: answer without a search.
        if dag.needs[from].contains(&target) {
            return true;
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.iter_mut().for_each(|m| *m = 0);
            self.stamp = 1;
        }
        let stamp = self.stamp;
        let mut stack: Vec<usize> = dag.needs[from].clone();
        while let Some(cur) = stack.pop() {
            if cur == target {
                return true;
            }
            if self.marks[cur] == stamp {
                continue;
            }
            self.marks[cur] = stamp;
            stack.extend(
                dag.needs[cur]
                    .iter()
                    .copied()
                    .filter(|&j| self.marks[j] != stamp),
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain `0 <- 1 <- ... <- n-1` (each step needs the one before), and
    /// with `close` the first also needs the last.
    fn chain(n: usize, close: bool) -> Dag {
        let mut needs: Vec<Vec<usize>> = (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect();
        if close {
            needs[0].push(n - 1);
        }
        Dag::new(needs)
    }

    #[test]
    fn a_long_chain_is_walked_without_recursion() {
        let n = 200_000;
        let dag = chain(n, false);
        assert!(dag.cycles().is_empty());
        let order = dag.order(|_| true);
        assert_eq!(order, (0..n).collect::<Vec<_>>());
        assert_eq!(dag.levels(&order)[n - 1], n - 1);
        let (path, weight) = dag.longest_path(&order, |_| 2);
        assert_eq!(path.len(), n);
        assert_eq!(weight, 2 * n as u128);
        assert!(Reach::new(n).needs(&dag, n - 1, 0));
    }

    #[test]
    fn a_long_loop_is_one_cycle_through_every_step() {
        let n = 200_000;
        let dag = chain(n, true);
        let cycles = dag.cycles();
        assert_eq!(cycles.len(), 1);
        let cycle = &cycles[0];
        assert_eq!(cycle.len(), n + 1);
        assert_eq!(cycle.first(), Some(&0));
        assert_eq!(cycle.last(), Some(&0));
        // Each step of the loop needs the next one.
        for w in cycle.windows(2) {
            assert!(dag.needs(w[0]).contains(&w[1]), "{w:?}");
        }
        assert!(dag.order(|_| true).is_empty());
    }

    #[test]
    fn many_small_loops_are_each_reported() {
        // 100,000 pairs that need each other.
        let n = 200_000;
        let dag = Dag::new((0..n).map(|i| vec![i ^ 1]).collect());
        let cycles = dag.cycles();
        assert_eq!(cycles.len(), n / 2);
        assert_eq!(cycles[0], vec![0, 1, 0]);
        assert_eq!(cycles[n / 2 - 1], vec![n - 2, n - 1, n - 2]);
    }

    #[test]
    fn cycles_are_shortest_loops_per_component_in_file_order() {
        // 0 -> 1 -> 2 -> 0 and 0 -> 2 (shortcut); 3 <-> 4; 5 alone needs 0.
        let dag = Dag::new(vec![
            vec![1, 2],
            vec![2],
            vec![0],
            vec![4],
            vec![3],
            vec![0],
        ]);
        assert_eq!(dag.cycles(), vec![vec![0, 2, 0], vec![3, 4, 3]]);
    }

    /// Generated graphs: every edge points to a lower index (a DAG), plus
    /// optionally one back edge; the order, levels and cycles agree with
    /// brute force.
    #[test]
    fn generated_graphs_agree_with_brute_force() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % bound as u64).unwrap()
        };
        for _ in 0..300 {
            let n = 1 + next(12);
            let mut needs: Vec<Vec<usize>> = (0..n)
                .map(|i| {
                    let mut v: Vec<usize> = (0..i).filter(|_| next(3) == 0).collect();
                    v.sort_unstable();
                    v
                })
                .collect();
            let back = (n > 1 && next(2) == 0).then(|| {
                let from = next(n - 1);
                let to = from + 1 + next(n - 1 - from);
                needs[from].push(to);
                (from, to)
            });
            let dag = Dag::new(needs.clone());
            // Brute-force reachability by repeated relaxation.
            let mut reach = vec![vec![false; n]; n];
            for (i, ns) in needs.iter().enumerate() {
                for &j in ns {
                    reach[i][j] = true;
                }
            }
            for k in 0..n {
                for i in 0..n {
                    for j in 0..n {
                        if reach[i][k] && reach[k][j] {
                            reach[i][j] = true;
                        }
                    }
                }
            }
            let mut r = Reach::new(n);
            for (i, row) in reach.iter().enumerate() {
                for (j, &expected) in row.iter().enumerate() {
                    assert_eq!(r.needs(&dag, i, j), expected, "{needs:?} {i}->{j}");
                }
            }
            let looped = (0..n).any(|i| reach[i][i]);
            assert_eq!(!dag.cycles().is_empty(), looped, "{needs:?} {back:?}");
            for cycle in dag.cycles() {
                for w in cycle.windows(2) {
                    assert!(needs[w[0]].contains(&w[1]));
                }
            }
            let order = dag.order(|_| true);
            if !looped {
                assert_eq!(order.len(), n);
                let mut at = vec![0; n];
                for (p, &i) in order.iter().enumerate() {
                    at[i] = p;
                }
                for (i, ns) in needs.iter().enumerate() {
                    for &j in ns {
                        assert!(at[j] < at[i], "{needs:?}");
                    }
                }
                let level = dag.levels(&order);
                for (i, ns) in needs.iter().enumerate() {
                    for &j in ns {
                        assert!(level[j] < level[i]);
                    }
                }
            }
        }
    }
}
