//! `exact_distinct_count(x)`: the number of distinct non-null `BIGINT`
//! values per group. Exact, like `count(DISTINCT x)`, which it replaces in
//! the export views for `unique_ip_count`.
//!
//! DataFusion's `count(DISTINCT)` inserts every (group, value) pair into one
//! hash set of 64-bit values, and its partial states copy every pair again.
//! Here memory follows the distinct values, not the rows or the pairs:
//! - each distinct value gets a dense `u32` id from an interner shared by
//!   every accumulator of the session's function (for `ip_hash`, one entry
//!   per distinct IP of the span; a read lock per batch, a write lock only
//!   for new values);
//! - a group keeps its ids as a vector (4 bytes an id), sorted and
//!   deduplicated whenever it has doubled, so at most about twice its
//!   distinct ids; once a bitmap up to its largest id would be smaller, as
//!   that bitmap. A group costs about min(4 × its distinct values, distinct
//!   values overall / 8) bytes: with 16k distinct IPs, at most 2 KiB
//!   however many pulls it counts;
//! - partial states are those sets serialised (`LargeBinary`: a tag byte,
//!   then the sorted ids or the bitmap's words), so the partial aggregate's
//!   output and the repartition's copies of it are bounded the same way.
//!
//! Ids mean something only to the session that made them: states are never
//! written anywhere but DataFusion's own spill files of the same query. The
//! interner lives as long as the session (an export's process; in the `sql`
//! shell, every query's distinct values so far, about 16 bytes each).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;
use std::sync::{Arc, PoisonError, RwLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, LargeBinaryArray, PrimitiveArray,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};

/// The function's SQL name.
pub const NAME: &str = "exact_distinct_count";

/// Below this many ids a vector is not deduplicated before it is counted.
const MIN_COMPACT: usize = 64;

/// State tags: a vector of sorted distinct ids, or a bitmap's words.
const SPARSE: u8 = 0;
const DENSE: u8 = 1;

/// The UDAF, to register on a session; its accumulators share one interner.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(ExactDistinctCount {
        signature: Signature::exact(vec![DataType::Int64], Volatility::Immutable),
        interner: Arc::default(),
    })
}

#[derive(Debug)]
struct ExactDistinctCount {
    signature: Signature,
    interner: Shared,
}

// One instance is registered per session; its interner is not part of
// what the function is.
impl PartialEq for ExactDistinctCount {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for ExactDistinctCount {}

impl std::hash::Hash for ExactDistinctCount {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl AggregateUDFImpl for ExactDistinctCount {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn is_nullable(&self) -> bool {
        false
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(One {
            interner: Arc::clone(&self.interner),
            set: Set::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "ids"),
            DataType::LargeBinary,
            true,
        ))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(
        &self,
        _args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(Groups {
            interner: Arc::clone(&self.interner),
            groups: Vec::new(),
        }))
    }

    fn default_value(&self, _data_type: &DataType) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(0)))
    }
}

/// Hashes an `i64` with one multiply and a fold: `ip_hash` is already a
/// keyed hash, and small integers still spread over the table's buckets.
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        let h = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }

    fn write_i64(&mut self, x: i64) {
        self.write_u64(x as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Dense ids for distinct values, in order of first sight.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<i64, u32, BuildHasherDefault<MixHasher>>,
}

type Shared = Arc<RwLock<Interner>>;

fn too_many() -> DataFusionError {
    DataFusionError::ResourcesExhausted(format!(
        "{NAME}: more than {} distinct values in one session",
        u32::MAX
    ))
}

/// The ids of `xs` where `keep(row)`, in row order. Known values are looked
/// up under a read lock (both partitions at once); new ones are added under
/// the write lock, once per batch.
fn intern(shared: &Shared, xs: &[i64], keep: impl Fn(usize) -> bool) -> Result<Vec<(usize, u32)>> {
    let mut out = Vec::with_capacity(xs.len());
    let mut missing = Vec::new();
    {
        let interner = shared.read().unwrap_or_else(PoisonError::into_inner);
        for (row, x) in xs.iter().enumerate() {
            if keep(row) {
                match interner.ids.get(x) {
                    Some(&id) => out.push((row, id)),
                    None => {
                        missing.push(out.len());
                        out.push((row, 0));
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        let mut interner = shared.write().unwrap_or_else(PoisonError::into_inner);
        for i in missing {
            let next = interner.ids.len();
            out[i].1 = match interner.ids.entry(xs[out[i].0]) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => *e.insert(u32::try_from(next).map_err(|_| too_many())?),
            };
        }
    }
    Ok(out)
}

/// One group's distinct ids.
#[derive(Debug)]
enum Set {
    /// Sorted and distinct up to `clean`, appended after.
    Sparse { ids: Vec<u32>, clean: usize },
    /// Bit `id % 64` of word `id / 64` for each id.
    Dense(Vec<u64>),
}

impl Default for Set {
    fn default() -> Self {
        Set::Sparse {
            ids: Vec::new(),
            clean: 0,
        }
    }
}

fn set_bit(words: &mut Vec<u64>, id: u32) {
    let w = (id / 64) as usize;
    if w >= words.len() {
        // Grows by an eighth, not by doubling: a bitmap is the large form,
        // and new ids (new IPs) come rarely once a span is under way.
        let len = (w + 1).max(words.len() + words.len() / 8);
        words.reserve_exact(len - words.len());
        words.resize(len, 0);
    }
    words[w] |= 1 << (id % 64);
}

/// A bitmap of `words` words with the bits of `ids` set (all below
/// `64 × words`).
fn bitmap(ids: &[u32], words: usize) -> Vec<u64> {
    let mut bits = vec![0; words];
    for &id in ids {
        bits[(id / 64) as usize] |= 1 << (id % 64);
    }
    bits
}

/// Whether a vector has doubled since it was last compacted.
fn doubled(ids: &[u32], clean: usize) -> bool {
    ids.len() >= MIN_COMPACT && ids.len() >= 2 * clean
}

impl Set {
    fn insert(&mut self, id: u32) {
        match self {
            Set::Sparse { ids, clean } => {
                ids.push(id);
                if doubled(ids, *clean) {
                    self.compact();
                }
            }
            Set::Dense(words) => set_bit(words, id),
        }
    }

    fn extend(&mut self, new: impl Iterator<Item = u32>) {
        match self {
            Set::Sparse { ids, clean } => {
                ids.extend(new);
                if doubled(ids, *clean) {
                    self.compact();
                }
            }
            Set::Dense(words) => new.for_each(|id| set_bit(words, id)),
        }
    }

    /// Sorts and deduplicates a vector; makes it a bitmap when the bitmap
    /// up to its largest id would take no more bytes than the vector holds
    /// (its capacity), so a vector never stays much larger than its bitmap.
    fn compact(&mut self) {
        let Set::Sparse { ids, clean } = self else {
            return;
        };
        if *clean < ids.len() {
            ids.sort_unstable();
            ids.dedup();
        }
        *clean = ids.len();
        let Some(&max) = ids.last() else {
            return;
        };
        let words = (max / 64) as usize + 1;
        if ids.capacity() * size_of::<u32>() >= words * size_of::<u64>() {
            *self = Set::Dense(bitmap(ids, words));
        }
    }

    /// ORs a bitmap's words in (the set becomes a bitmap).
    fn union_words(&mut self, other: impl ExactSizeIterator<Item = u64>) {
        if let Set::Sparse { ids, .. } = self {
            let max = ids.iter().max().map_or(0, |&m| (m / 64) as usize + 1);
            *self = Set::Dense(bitmap(ids, max.max(other.len())));
        }
        if let Set::Dense(words) = self {
            if words.len() < other.len() {
                words.reserve_exact(other.len() - words.len());
                words.resize(other.len(), 0);
            }
            for (w, o) in words.iter_mut().zip(other) {
                *w |= o;
            }
        }
    }

    fn count(&mut self) -> i64 {
        self.compact();
        let n = match self {
            Set::Sparse { ids, .. } => ids.len(),
            Set::Dense(words) => words.iter().map(|w| w.count_ones() as usize).sum(),
        };
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Set::Sparse { ids, .. } => ids.capacity() * size_of::<u32>(),
            Set::Dense(words) => words.capacity() * size_of::<u64>(),
        }
    }

    /// Bytes of the state `write` appends (after `compact`).
    fn state_len(&self) -> usize {
        1 + match self {
            Set::Sparse { ids, .. } => ids.len() * size_of::<u32>(),
            Set::Dense(words) => words.len() * size_of::<u64>(),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Set::Sparse { ids, .. } => {
                out.push(SPARSE);
                ids.iter()
                    .for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
            }
            Set::Dense(words) => {
                out.push(DENSE);
                words
                    .iter()
                    .for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
            }
        }
    }

    /// Merges a state written by `write`.
    fn merge(&mut self, state: &[u8]) -> Result<()> {
        match state.split_first() {
            Some((&SPARSE, ids)) if ids.len() % 4 == 0 => {
                self.extend(ids.chunks_exact(4).map(|b| {
                    u32::from_le_bytes(b.try_into().expect("chunks_exact(4) gives 4 bytes"))
                }));
            }
            Some((&DENSE, words)) if words.len() % 8 == 0 => {
                self.union_words(words.chunks_exact(8).map(|b| {
                    u64::from_le_bytes(b.try_into().expect("chunks_exact(8) gives 8 bytes"))
                }));
            }
            _ => {
                return Err(DataFusionError::Internal(format!(
                    "{NAME}: a partial state of {} bytes is not one this function wrote",
                    state.len()
                )));
            }
        }
        Ok(())
    }
}

/// The array of partial states, one per set. The sets are consumed (as
/// `state` may): each is freed once copied, and the copy is allocated once
/// at its final size.
fn to_state(mut sets: Vec<Set>) -> ArrayRef {
    let mut lengths = Vec::with_capacity(sets.len());
    for s in &mut sets {
        s.compact();
        lengths.push(s.state_len());
    }
    let mut bytes = Vec::with_capacity(lengths.iter().sum());
    for s in sets {
        s.write(&mut bytes);
    }
    Arc::new(LargeBinaryArray::new(
        OffsetBuffer::from_lengths(lengths),
        Buffer::from_vec(bytes),
        None,
    ))
}

/// Whether `row` is kept by an aggregate's `FILTER` and is not null.
fn kept(values: &PrimitiveArray<Int64Type>, filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_none_or(|f| f.is_valid(row) && f.value(row)) && values.is_valid(row)
}

#[derive(Debug)]
struct Groups {
    interner: Shared,
    groups: Vec<Set>,
}

impl GroupsAccumulator for Groups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Set::default);
        let arr = values[0].as_primitive::<Int64Type>();
        let all = arr.null_count() == 0 && opt_filter.is_none();
        let ids = intern(&self.interner, arr.values(), |row| {
            all || kept(arr, opt_filter, row)
        })?;
        for (row, id) in ids {
            self.groups[group_indices[row]].insert(id);
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let counts: Int64Array = emit_to
            .take_needed(&mut self.groups)
            .iter_mut()
            .map(|g| Some(g.count()))
            .collect();
        Ok(Arc::new(counts))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![to_state(emit_to.take_needed(&mut self.groups))])
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_num_groups, Set::default);
        let states = values[0].as_binary::<i64>();
        for (row, &g) in group_indices.iter().enumerate() {
            if states.is_valid(row) {
                self.groups[g].merge(states.value(row))?;
            }
        }
        Ok(())
    }

    /// Each input row as a state of its own: its id, or nothing when it is
    /// null or filtered out (used when DataFusion skips the partial step).
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let arr = values[0].as_primitive::<Int64Type>();
        let mut sets: Vec<Set> = (0..arr.len()).map(|_| Set::default()).collect();
        for (row, id) in intern(&self.interner, arr.values(), |row| {
            kept(arr, opt_filter, row)
        })? {
            sets[row].insert(id);
        }
        Ok(vec![to_state(sets)])
    }

    fn size(&self) -> usize {
        self.groups.capacity() * size_of::<Set>()
            + self.groups.iter().map(Set::heap_bytes).sum::<usize>()
    }
}

/// The accumulator for an aggregate without groups.
#[derive(Debug)]
struct One {
    interner: Shared,
    set: Set,
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let arr = values[0].as_primitive::<Int64Type>();
        for (_, id) in intern(&self.interner, arr.values(), |row| arr.is_valid(row))? {
            self.set.insert(id);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Int64(Some(self.set.count())))
    }

    fn size(&self) -> usize {
        size_of::<Self>() + self.set.heap_bytes()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let state = to_state(vec![std::mem::take(&mut self.set)]);
        Ok(vec![ScalarValue::LargeBinary(Some(
            state.as_binary::<i64>().value(0).to_vec(),
        ))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let states = states[0].as_binary::<i64>();
        for row in 0..states.len() {
            if states.is_valid(row) {
                self.set.merge(states.value(row))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;
    use proptest::prelude::*;

    async fn both(rows: &[(i64, Option<i64>)], partitions: usize) -> Vec<(i64, i64, i64)> {
        let config = datafusion::prelude::SessionConfig::new()
            .with_target_partitions(partitions)
            .with_batch_size(7);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_udaf(udaf());
        let values: Vec<String> = rows
            .iter()
            .map(|(g, v)| match v {
                Some(v) => format!("({g}, {v})"),
                None => format!("({g}, NULL)"),
            })
            .collect();
        let sql = format!(
            "SELECT column1 AS g, count(DISTINCT column2) AS a, {NAME}(column2) AS b \
             FROM (VALUES {}) GROUP BY column1 ORDER BY column1",
            values.join(", ")
        );
        let batches = ctx
            .sql(&sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let mut out = Vec::new();
        for b in batches {
            let g = b.column(0).as_primitive::<Int64Type>();
            let a = b.column(1).as_primitive::<Int64Type>();
            let c = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                out.push((g.value(i), a.value(i), c.value(i)));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever the groups, duplicates, nulls and partitioning, the
        /// count equals DataFusion's own `count(DISTINCT)`.
        #[test]
        fn equals_count_distinct(
            rows in proptest::collection::vec((0i64..5, proptest::option::weighted(0.9, 0i64..300)), 1..600),
            partitions in 1usize..4,
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            for (g, a, b) in rt.block_on(both(&rows, partitions)) {
                prop_assert_eq!(a, b, "group {}", g);
            }
        }
    }

    #[tokio::test]
    async fn without_groups_and_over_nothing() {
        let ctx = SessionContext::new();
        ctx.register_udaf(udaf());
        let count = |sql: &'static str| {
            let ctx = ctx.clone();
            async move {
                let b = ctx
                    .sql(sql)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run");
                b[0].column(0).as_primitive::<Int64Type>().value(0)
            }
        };
        assert_eq!(
            count("SELECT exact_distinct_count(column1) FROM (VALUES (1), (1), (NULL), (2))").await,
            2
        );
        assert_eq!(
            count("SELECT exact_distinct_count(column1) FROM (VALUES (1)) WHERE column1 > 5").await,
            0
        );
    }

    #[test]
    fn a_vector_keeps_at_most_about_twice_its_distinct_ids() {
        let mut s = Set::default();
        // Ids spread over 256 × 1000 so that a bitmap would be bigger.
        for i in 0..100_000u32 {
            s.insert((i % 1000) * 256);
        }
        let Set::Sparse { ids, .. } = &s else {
            panic!("became a bitmap: {s:?}")
        };
        assert!(ids.len() <= 2 * 1000 + MIN_COMPACT, "{}", ids.len());
        assert_eq!(s.count(), 1000);
    }

    #[test]
    fn a_set_becomes_a_bitmap_when_that_is_smaller() {
        let mut s = Set::default();
        for i in 0..10_000u32 {
            s.insert(i % 3000);
        }
        let Set::Dense(words) = &s else {
            panic!("still a vector: {s:?}")
        };
        // 47 words hold ids below 3008; a bitmap grows by an eighth.
        assert!(
            (47..=47 * 9 / 8 + 1).contains(&words.len()),
            "{}",
            words.len()
        );
        // A vector of the same ids takes 12,000 bytes.
        assert!(s.heap_bytes() <= 8 * (47 * 9 / 8 + 1), "{}", s.heap_bytes());
        assert_eq!(s.count(), 3000);
    }

    #[rstest::rstest]
    #[case::vector_into_vector(&[1, 5, 5, 900], &[5, 7], 4)]
    #[case::bitmap_into_vector(&[3, 4, 5, 6, 7, 8, 9, 10, 11, 12], &[12, 13, 900_000], 12)]
    #[case::vector_into_bitmap(&[900_000, 1], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 12)]
    #[case::empty(&[], &[], 0)]
    fn states_merge_whatever_their_form(#[case] a: &[u32], #[case] b: &[u32], #[case] n: i64) {
        let set = |ids: &[u32]| {
            let mut s = Set::default();
            s.extend(ids.iter().copied());
            s
        };
        let state = to_state(vec![set(a)]);
        let mut into = set(b);
        into.merge(state.as_binary::<i64>().value(0))
            .expect("merge");
        assert_eq!(into.count(), n);
        assert!(Set::default().merge(&[9, 1, 2]).is_err());
        assert!(Set::default().merge(&[SPARSE, 1, 2]).is_err());
    }

    #[test]
    fn ids_are_dense_in_order_of_first_sight_and_shared() {
        let interner = Shared::default();
        let ids = intern(&interner, &[7, -3, 7, i64::MIN], |row| row != 3).expect("intern");
        assert_eq!(ids, vec![(0, 0), (1, 1), (2, 0)]);
        let again = intern(&interner, &[-3, 42, 7], |_| true).expect("intern");
        assert_eq!(again, vec![(0, 1), (1, 2), (2, 0)]);
    }
}
