//! Compile-time checks of what a share is and is not.

use xor_split::{Error, XorShare};
use zeroize::ZeroizeOnDrop;

/// Resolves to `()` for every type, but becomes ambiguous (a compile error) at the call site
/// for a type that also implements the trait in question: the usual way to assert that a
/// trait is *not* implemented without a third-party crate.
macro_rules! assert_not_impl {
    ($ty:ty: $($trait:path),+) => {{
        $(
            {
                trait AmbiguousIfImpl<A> {
                    fn check() {}
                }
                impl<T: ?Sized> AmbiguousIfImpl<()> for T {}
                #[allow(dead_code)] // Only its existence matters: it makes a wrong impl ambiguous.
                struct Invalid;
                impl<T: ?Sized + $trait> AmbiguousIfImpl<Invalid> for T {}
                <$ty as AmbiguousIfImpl<_>>::check();
            }
        )+
    }};
}

#[test]
fn share_is_wiped_on_drop_and_not_copyable() {
    fn zeroize_on_drop<T: ZeroizeOnDrop>() {}
    zeroize_on_drop::<XorShare>();
    assert_not_impl!(XorShare: Clone, Copy, core::ops::Deref, AsRef<[u8]>, core::fmt::Display, PartialEq);
}

#[test]
fn public_types_can_cross_threads() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<XorShare>();
    send_sync::<Error>();
    fn std_error<T: std::error::Error>() {}
    std_error::<Error>();
}
