//! The item tree: one source file lowered from `syn` into plain, `Send + Sync`
//! data (syn's trees hold `proc_macro2` spans and are neither `Send` nor `Sync`).
//!
//! The tree keeps what the later queries need and nothing else: item names,
//! kinds, visibility and positions, `use` trees flattened into single imports,
//! `mod` declarations, integer `const`/`static` initializers as [`CExpr`], and
//! function bodies summarised as their path calls and direct panic sites, in
//! source order. Positions are 1-based lines and 1-based columns.

use std::fmt;
use std::sync::Arc;

/// An identifier.
pub type Name = Arc<str>;

/// A source position: 1-based line, 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub col: u32,
}

/// Visibility as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawVis {
    /// No `pub`.
    Private,
    /// `pub`.
    Public,
    /// `pub(crate)`.
    Crate,
    /// `pub(super)`.
    Super,
    /// `pub(self)` or `pub(in path)`: treated as visible in the named module;
    /// `pub(in path)` is simplified to `pub(crate)`.
    SelfMod,
}

/// A path as written: `::a::b`, `crate::x`, `super::super::y`, `Self::new`.
/// The keywords `crate`, `self`, `super` and `Self` stay as segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// Leading `::`.
    pub global: bool,
    /// The segments, generic arguments dropped.
    pub segments: Vec<Name>,
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.global {
            f.write_str("::")?;
        }
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("::")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

/// The lowered items of one file.
#[derive(Debug, Clone, Default)]
pub struct ItemTree {
    /// Top-level items in source order.
    pub items: Vec<Item>,
}

/// One item.
#[derive(Debug, Clone)]
pub struct Item {
    /// The item's name (`""` for `use`, `impl` and other unnamed items).
    pub name: Name,
    /// Visibility as written.
    pub vis: RawVis,
    /// Position of the item's name (or its first token when unnamed).
    pub pos: Pos,
    /// What the item is.
    pub kind: ItemKind,
}

/// What an item is.
#[derive(Debug, Clone)]
pub enum ItemKind {
    /// `mod x;` (`body: None`) or `mod x { .. }`.
    Mod {
        /// Inline items, or `None` for an out-of-line module.
        body: Option<Vec<Item>>,
        /// `#[path = ".."]`.
        path_attr: Option<String>,
    },
    /// A `use` item, flattened into its imports.
    Use(Vec<UseImport>),
    /// `extern crate krate as name;` (`name` is the item name).
    ExternCrate {
        /// The crate named.
        krate: Name,
    },
    /// `const`.
    Const(Arc<ConstItem>),
    /// `static`.
    Static(Arc<ConstItem>),
    /// A free function.
    Fn {
        /// Body summary.
        body: Arc<FnBody>,
        /// Name of the macro this function defines, for `#[proc_macro*]`.
        proc_macro: Option<Name>,
    },
    /// `struct`.
    Struct,
    /// `enum` with its variant names.
    Enum {
        /// Variant names in order.
        variants: Vec<Name>,
    },
    /// `union`.
    Union,
    /// `trait` with its methods that have a default body.
    Trait {
        /// Provided methods.
        fns: Vec<AssocFn>,
    },
    /// `type X = ..;`.
    TypeAlias,
    /// `macro_rules! name`.
    MacroRules {
        /// `#[macro_export]`: also defined at the crate root.
        exported: bool,
    },
    /// `impl`.
    Impl {
        /// The self type, when it is a plain path.
        self_ty: Option<Path>,
        /// Whether this is a trait impl.
        is_trait_impl: bool,
        /// Methods with bodies.
        fns: Vec<AssocFn>,
    },
    /// Anything else (foreign blocks, item macros, ...): counted, not resolved.
    Other,
}

/// A function inside an `impl` or `trait`.
#[derive(Debug, Clone)]
pub struct AssocFn {
    /// Method name.
    pub name: Name,
    /// Visibility as written.
    pub vis: RawVis,
    /// Position of the name.
    pub pos: Pos,
    /// Body summary.
    pub body: Arc<FnBody>,
}

/// One import of a flattened `use` tree.
#[derive(Debug, Clone)]
pub struct UseImport {
    /// Full path: of the imported item, or of the module for a glob.
    pub path: Path,
    /// Named or glob.
    pub kind: UseKind,
    /// Position of the import's last segment (or `*`).
    pub pos: Pos,
}

/// How an import binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UseKind {
    /// `use a::b;`, `use a::b as c;`, `use a::{self};`: binds `alias`.
    /// `alias` is `_` for `as _`.
    Named {
        /// The bound name.
        alias: Name,
    },
    /// `use a::*;`.
    Glob,
}

/// A `const` or `static` item.
#[derive(Debug, Clone)]
pub struct ConstItem {
    /// Declared type, when a primitive integer type.
    pub ty: Option<IntTy>,
    /// Initializer.
    pub expr: Option<CExpr>,
}

/// A function body summarised.
#[derive(Debug, Clone, Default)]
pub struct FnBody {
    /// Calls of paths (`f(..)`, `a::b(..)`, `T::new(..)`), in source order.
    pub calls: Vec<Call>,
    /// Direct panic sites, in source order.
    pub panics: Vec<PanicSite>,
}

/// A call of a path.
#[derive(Debug, Clone)]
pub struct Call {
    /// The callee path.
    pub path: Path,
    /// Position of the call.
    pub pos: Pos,
}

/// A direct panic site: `panic!`, `unreachable!`, `todo!`, `unimplemented!`,
/// `assert!`, `assert_eq!`, `assert_ne!`, `.unwrap()`, `.expect(..)`.
#[derive(Debug, Clone)]
pub struct PanicSite {
    /// `panic!`, `.unwrap()`, ...
    pub what: &'static str,
    /// Position.
    pub pos: Pos,
}

/// A primitive integer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum IntTy {
    I8,
    I16,
    I32,
    I64,
    I128,
    Isize,
    U8,
    U16,
    U32,
    U64,
    U128,
    Usize,
}

impl IntTy {
    /// Parses a primitive integer type name.
    pub fn from_name(s: &str) -> Option<IntTy> {
        Some(match s {
            "i8" => IntTy::I8,
            "i16" => IntTy::I16,
            "i32" => IntTy::I32,
            "i64" => IntTy::I64,
            "i128" => IntTy::I128,
            "isize" => IntTy::Isize,
            "u8" => IntTy::U8,
            "u16" => IntTy::U16,
            "u32" => IntTy::U32,
            "u64" => IntTy::U64,
            "u128" => IntTy::U128,
            "usize" => IntTy::Usize,
            _ => return None,
        })
    }

    /// The type's name.
    pub fn name(self) -> &'static str {
        match self {
            IntTy::I8 => "i8",
            IntTy::I16 => "i16",
            IntTy::I32 => "i32",
            IntTy::I64 => "i64",
            IntTy::I128 => "i128",
            IntTy::Isize => "isize",
            IntTy::U8 => "u8",
            IntTy::U16 => "u16",
            IntTy::U32 => "u32",
            IntTy::U64 => "u64",
            IntTy::U128 => "u128",
            IntTy::Usize => "usize",
        }
    }

    /// Width in bits (`usize`/`isize` are 64 bits: the analysis targets 64-bit hosts).
    pub fn bits(self) -> u32 {
        match self {
            IntTy::I8 | IntTy::U8 => 8,
            IntTy::I16 | IntTy::U16 => 16,
            IntTy::I32 | IntTy::U32 => 32,
            IntTy::I64 | IntTy::U64 | IntTy::Isize | IntTy::Usize => 64,
            IntTy::I128 | IntTy::U128 => 128,
        }
    }

    /// Whether the type is signed.
    pub fn signed(self) -> bool {
        matches!(
            self,
            IntTy::I8 | IntTy::I16 | IntTy::I32 | IntTy::I64 | IntTy::I128 | IntTy::Isize
        )
    }

    /// Smallest value.
    pub fn min(self) -> i128 {
        if self.signed() {
            i128::MIN >> (128 - self.bits())
        } else {
            0
        }
    }

    /// Largest value, as `u128` (fits every type, `u128::MAX` included).
    pub fn max(self) -> u128 {
        if self.signed() {
            (1u128 << (self.bits() - 1)) - 1
        } else if self.bits() == 128 {
            u128::MAX
        } else {
            (1u128 << self.bits()) - 1
        }
    }
}

/// A unary operator of a const expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-x`.
    Neg,
    /// `!x`.
    Not,
}

/// A binary operator of a const expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Shl,
    Shr,
    BitAnd,
    BitOr,
    BitXor,
}

/// A const initializer, as far as the evaluator understands it.
#[derive(Debug, Clone)]
pub enum CExpr {
    /// An integer literal with its suffix.
    Int {
        /// The literal's value.
        value: u128,
        /// `1u8` → `Some(U8)`.
        suffix: Option<IntTy>,
        /// Position.
        pos: Pos,
    },
    /// `true`/`false` (only as the operand of a cast).
    Bool(bool, Pos),
    /// A char literal (only as the operand of a cast).
    Char(char, Pos),
    /// A path to a const, static or associated const of a primitive type.
    Path(Path, Pos),
    /// `-x`, `!x`.
    Unary(UnOp, Box<CExpr>, Pos),
    /// `a op b`.
    Binary(BinOp, Box<CExpr>, Box<CExpr>, Pos),
    /// `x as T`; `None` when `T` is not a primitive integer type.
    Cast(Box<CExpr>, Option<IntTy>, Pos),
    /// An integer literal above `u128::MAX`: an error, as in rustc
    /// ("integer literal is too large"), like any literal out of its type's
    /// range.
    TooLarge(Pos),
    /// Anything else: the description of what it is.
    Unsupported(&'static str, Pos),
}

impl CExpr {
    /// The expression's position.
    pub fn pos(&self) -> Pos {
        match self {
            CExpr::Int { pos, .. }
            | CExpr::Bool(_, pos)
            | CExpr::Char(_, pos)
            | CExpr::Path(_, pos)
            | CExpr::Unary(_, _, pos)
            | CExpr::Binary(_, _, _, pos)
            | CExpr::Cast(_, _, pos)
            | CExpr::TooLarge(pos)
            | CExpr::Unsupported(_, pos) => *pos,
        }
    }
}

/// Counts of a tree: `(items, functions)`; `use` items and item macros are not
/// items, functions are free functions and methods with bodies.
pub fn count_items(items: &[Item]) -> (usize, usize) {
    let (mut n_items, mut n_fns) = (0, 0);
    for item in items {
        match &item.kind {
            ItemKind::Use(_) | ItemKind::Other => continue,
            ItemKind::Mod {
                body: Some(body), ..
            } => {
                let (i, f) = count_items(body);
                n_items += i;
                n_fns += f;
            }
            ItemKind::Fn { .. } => n_fns += 1,
            ItemKind::Trait { fns } | ItemKind::Impl { fns, .. } => n_fns += fns.len(),
            _ => {}
        }
        n_items += 1;
    }
    (n_items, n_fns)
}
