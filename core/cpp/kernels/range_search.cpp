#include "kernels/range_search.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>

#include "kernels/scan.hpp"

namespace hashmatch {

// Rows per tile: 8192 hashes are 256 KiB, small enough to stay in L2 while every query block
// passes over them.
constexpr size_t kTileRows = 8192;

namespace {

std::atomic<int> g_fault{0};

// One parallel_for call: parts are claimed by index from `next`, by the caller and by any pool
// thread that took the job from the queue. A queue entry that outlives the call finds nothing
// left to claim and never touches `fn`.
struct Job {
    const std::function<void(size_t, size_t)>* fn;
    size_t count, parts, step;
    std::atomic<size_t> next{0};
    std::atomic<bool> failed{false};
    size_t done = 0;
    std::exception_ptr error;
    std::mutex mu;
    std::condition_variable finished;

    void work() {
        for (;;) {
            const size_t p = next.fetch_add(1);
            if (p >= parts) return;
            const size_t b = p * step, e = std::min(b + step, count);
            try {
                if (!failed.load(std::memory_order_relaxed)) (*fn)(b, e);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mu);
                if (!error) error = std::current_exception();
                failed = true;
            }
            std::lock_guard<std::mutex> lock(mu);
            if (++done == parts) finished.notify_all();
        }
    }
};

class Pool {
public:
    explicit Pool(int threads) {
        for (int t = 0; t < threads; ++t) std::thread([this] { loop(); }).detach();
    }
    void submit(const std::shared_ptr<Job>& job, size_t helpers) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            for (size_t i = 0; i < helpers; ++i) queue_.push_back(job);
        }
        if (helpers == 1) wake_.notify_one();
        else wake_.notify_all();
    }

private:
    void loop() {
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> lock(mu_);
                wake_.wait(lock, [this] { return !queue_.empty(); });
                job = std::move(queue_.front());
                queue_.pop_front();
            }
            job->work();
        }
    }
    std::mutex mu_;
    std::condition_variable wake_;
    std::deque<std::shared_ptr<Job>> queue_;
};

// Never destroyed (its threads are detached and outlive static destructors). A forked child
// inherits none of its threads, so it starts a pool of its own on first use.
std::atomic<Pool*> g_pool{nullptr};
std::once_flag g_atfork_once;

Pool& pool() {
    Pool* p = g_pool.load();
    if (p) return *p;
    std::call_once(g_atfork_once, [] {
        pthread_atfork(nullptr, nullptr, [] { g_pool.store(nullptr); });
    });
    static std::mutex create;
    std::lock_guard<std::mutex> lock(create);
    p = g_pool.load();
    if (!p) {
        p = new Pool(std::max(hardware_threads() - 1, 0));
        g_pool.store(p);
    }
    return *p;
}

void throw_if_test_fault() {
    if (test_fault() == TestFault::throw_in_worker) throw std::bad_alloc();
}

}  // namespace

TestFault test_fault() { return static_cast<TestFault>(g_fault.load(std::memory_order_relaxed)); }
void set_test_fault(TestFault fault) { g_fault.store(static_cast<int>(fault)); }

int hardware_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n ? static_cast<int>(n) : 1;
}

void parallel_for(size_t count, int threads, const std::function<void(size_t, size_t)>& fn) {
    if (threads <= 0) threads = hardware_threads();
    if (static_cast<size_t>(threads) > count) threads = static_cast<int>(count);
    if (threads <= 1) {
        if (count) fn(size_t{0}, count);
        return;
    }
    auto job = std::make_shared<Job>();
    job->fn = &fn;
    job->count = count;
    job->step = (count + threads - 1) / threads;
    job->parts = (count + job->step - 1) / job->step;
    pool().submit(job, job->parts - 1);
    job->work();
    std::unique_lock<std::mutex> lock(job->mu);
    job->finished.wait(lock, [&] { return job->done == job->parts; });
    if (job->error) std::rethrow_exception(job->error);
}

void check_threshold(int threshold) {
    if (threshold < 0 || threshold > kMaxDistance)
        throw std::invalid_argument("threshold must be between 0 and 256 (inclusive), got " +
                                    std::to_string(threshold));
}

HitLists::HitLists(size_t nq, const HitLimits& limits)
    : lists_(nq),
      truncated_(nq, 0),
      limits_(limits),
      trim_at_(limits.max_per_query ? 2 * limits.max_per_query + 64 : 0) {}

void HitLists::trim(size_t q) {
    auto& list = lists_[q];
    if (limits_.n_dead) {
        const int64_t* dead = limits_.dead;
        const int64_t* end = dead + limits_.n_dead;
        list.erase(std::remove_if(list.begin(), list.end(),
                                  [&](uint64_t hit) {
                                      return std::binary_search(
                                          dead, end, static_cast<int64_t>(hit_row(hit)));
                                  }),
                   list.end());
    }
    const size_t cap = limits_.max_per_query;
    if (cap && list.size() > cap) {
        std::nth_element(list.begin(), list.begin() + cap, list.end());
        list.resize(cap);
        truncated_[q] = 1;
    }
}

Csr HitLists::finish(int threads) {
    const size_t nq = lists_.size();
    parallel_for(nq, nq < 64 ? 1 : threads, [&](size_t b, size_t e) {
        for (size_t q = b; q < e; ++q) {
            trim(q);
            std::sort(lists_[q].begin(), lists_[q].end());
        }
    });
    Csr out;
    out.offsets.resize(nq + 1);
    size_t total = 0;
    for (size_t q = 0; q < nq; ++q) {
        out.offsets[q] = static_cast<int64_t>(total);
        total += lists_[q].size();
    }
    out.offsets[nq] = static_cast<int64_t>(total);
    out.rows.resize(total);
    out.distances.resize(total);
    size_t k = 0;
    for (auto& list : lists_) {
        for (uint64_t hit : list) {
            out.rows[k] = static_cast<int64_t>(hit_row(hit));
            out.distances[k] = hit_distance(hit);
            ++k;
        }
        std::vector<uint64_t>().swap(list);
    }
    out.truncated = std::move(truncated_);
    return out;
}

Merged merge_parts(const std::vector<SortedPart>& parts, size_t nq, size_t max_per_query) {
    if (parts.size() > 255) throw std::invalid_argument("at most 255 parts can be merged");
    Merged out;
    out.offsets.resize(nq + 1);
    out.truncated.resize(nq, 0);
    size_t total = 0;
    for (size_t q = 0; q < nq; ++q) {
        size_t here = 0;
        for (const SortedPart& p : parts) here += static_cast<size_t>(p.offsets[q + 1] - p.offsets[q]);
        out.offsets[q] = static_cast<int64_t>(total);
        if (max_per_query && here > max_per_query) {
            here = max_per_query;
            out.truncated[q] = 1;
        }
        total += here;
    }
    out.offsets[nq] = static_cast<int64_t>(total);
    out.ids.resize(total);
    out.distances.resize(total);
    out.parts.resize(total);
    std::vector<int64_t> head(parts.size());
    for (size_t q = 0; q < nq; ++q) {
        for (size_t k = 0; k < parts.size(); ++k) head[k] = parts[k].offsets[q];
        for (int64_t o = out.offsets[q]; o < out.offsets[q + 1]; ++o) {
            size_t best = parts.size();
            for (size_t k = 0; k < parts.size(); ++k) {
                if (head[k] == parts[k].offsets[q + 1]) continue;
                if (best == parts.size()) {
                    best = k;
                    continue;
                }
                const int32_t d = parts[k].distances[head[k]], bd = parts[best].distances[head[best]];
                if (d < bd || (d == bd && parts[k].ids[head[k]] < parts[best].ids[head[best]]))
                    best = k;
            }
            out.ids[o] = parts[best].ids[head[best]];
            out.distances[o] = parts[best].distances[head[best]];
            out.parts[o] = static_cast<uint8_t>(best);
            ++head[best];
        }
    }
    return out;
}

void scan_into(const uint64_t* queries, size_t nq, const uint64_t* hashes, size_t n,
               int threshold, CpuPath path, int threads, HitLists& hits) {
    const ScanFn scan = scan_for(path);
    const size_t blocks = (nq + kQueryBlock - 1) / kQueryBlock;
    // Small work is not worth waking the pool.
    if (static_cast<double>(nq) * static_cast<double>(n) < 4e6) threads = 1;
    parallel_for(blocks, threads, [&](size_t b0, size_t b1) {
        throw_if_test_fault();
        for (size_t r0 = 0; r0 < n; r0 += kTileRows) {
            const size_t r1 = r0 + kTileRows < n ? r0 + kTileRows : n;
            for (size_t b = b0; b < b1; ++b) {
                const size_t q0 = b * kQueryBlock;
                const size_t count = nq - q0 < kQueryBlock ? nq - q0 : kQueryBlock;
                scan(queries + q0 * kWords, static_cast<int>(count), hashes, r0, r1, threshold,
                     &hits[q0]);
                for (size_t q = q0; q < q0 + count; ++q) hits.trim_if_long(q);
            }
        }
    });
}

Csr range_search(const uint64_t* queries, size_t nq, const uint64_t* hashes, size_t n,
                 int threshold, CpuPath path, int threads, const HitLimits& limits) {
    check_threshold(threshold);
    if (!cpu_supports(path))
        throw std::invalid_argument(std::string("cpu path '") + cpu_path_name(path) +
                                    "' is not supported by this CPU");
    HitLists hits(nq, limits);
    scan_into(queries, nq, hashes, n, threshold, path, threads, hits);
    return hits.finish(threads);
}

}  // namespace hashmatch
