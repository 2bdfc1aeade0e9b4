//! Exponential backoff with jitter: the one recipe every retry loop uses
//! (the runner's transient retries, the vision reviewer).

use std::time::Duration;

/// `first` doubled per attempt after the first (attempt 1 waits about
/// `first`), plus up to 50% jitter so concurrent retries spread out, never
/// above `max`.
pub fn exponential(first: Duration, attempt: u32, max: Duration) -> Duration {
    let exp = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(10));
    let jitter = exp.mul_f64(fastrand::f64() * 0.5);
    (exp + jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_and_stays_under_the_cap() {
        let ms = Duration::from_millis;
        for _ in 0..100 {
            let one = exponential(ms(200), 1, ms(5000));
            assert!((ms(200)..=ms(300)).contains(&one), "{one:?}");
            let three = exponential(ms(200), 3, ms(5000));
            assert!((ms(800)..=ms(1200)).contains(&three), "{three:?}");
            assert!(exponential(ms(200), 40, ms(5000)) <= ms(5000));
        }
    }
}
