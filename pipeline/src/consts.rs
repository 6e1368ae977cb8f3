//! The `const_value(def)` query: evaluation of integer `const` and `static`
//! initializers.
//!
//! Supported: integer literals (with suffixes), `+ - * / % << >> & | ^ !`,
//! unary minus, parentheses, `as` casts between integer types (and from
//! `bool`/`char` literals), `u32::MAX`-style associated consts of primitive
//! integers (`MIN`, `MAX`, `BITS`, also as `core::u32::MAX`), and paths to other
//! integer consts in any module or analyzed crate. Types follow Rust's rules as
//! far as they matter here: an operation has the type of its typed operand
//! (suffix, const, cast) or of its context, an unsuffixed literal without
//! either is `i32`; `usize`/`isize` are 64 bits.
//!
//! Overflow, division by zero and out-of-range literals are errors; unsupported
//! expressions and paths that lead nowhere are warnings. Either way the const
//! is unknown, and consts that use it are unknown without another diagnostic.
//! A const that depends on itself is a query cycle; `recover` turns it into
//! [`ConstValue::Cycle`] and the crate report prints it once per cycle.

use std::sync::Arc;

use weft_queries::{query, Cycle, Severity};

use crate::db::{ConstKey, Cx};
use crate::def_map::{DefKind, DefMap, DefMapQuery, Ns, PathRes};
use crate::item_tree::{BinOp, CExpr, IntTy, Path, Pos, UnOp};

/// A typed integer value; `raw` holds the value modulo `2^bits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Val {
    /// The value's type.
    pub ty: IntTy,
    raw: u128,
}

fn mask(ty: IntTy) -> u128 {
    if ty.bits() == 128 {
        u128::MAX
    } else {
        (1u128 << ty.bits()) - 1
    }
}

impl Val {
    /// Wraps `bits` (two's complement) into `ty`.
    fn wrap(ty: IntTy, bits: u128) -> Val {
        Val {
            ty,
            raw: bits & mask(ty),
        }
    }

    fn from_i128(ty: IntTy, v: i128) -> Option<Val> {
        let fits = if ty.signed() {
            v >= ty.min() && (v < 0 || v as u128 <= ty.max())
        } else {
            v >= 0 && v as u128 <= ty.max()
        };
        fits.then(|| Val::wrap(ty, v as u128))
    }

    fn from_u128(ty: IntTy, v: u128) -> Option<Val> {
        (v <= ty.max()).then(|| Val::wrap(ty, v))
    }

    /// The value as `i128` (for signed types, and unsigned up to `i128::MAX`).
    fn signed(self) -> i128 {
        let bits = self.ty.bits();
        if self.ty.signed() && bits < 128 && self.raw >> (bits - 1) & 1 == 1 {
            (self.raw | !mask(self.ty)) as i128
        } else {
            self.raw as i128
        }
    }

    /// The value in decimal.
    pub fn to_decimal(self) -> String {
        if self.ty.signed() {
            self.signed().to_string()
        } else {
            self.raw.to_string()
        }
    }

    /// Sign- or zero-extended bits, as `as` casts see them.
    fn extended(self) -> u128 {
        if self.ty.signed() {
            self.signed() as u128
        } else {
            self.raw
        }
    }
}

/// Why a const has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstError {
    /// Where.
    pub pos: Pos,
    /// Error or warning.
    pub severity: Severity,
    /// What went wrong (without the const's name).
    pub message: String,
}

/// The value of an integer const.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstValue {
    /// Evaluated.
    Known(Val),
    /// Failed here; reported with this const.
    Error(Arc<ConstError>),
    /// Uses a const that failed; reported there.
    DependsOnError,
    /// Part of a dependency cycle (the engine's canonical cycle).
    Cycle(Arc<Cycle>),
}

/// The `const_value(def)` query; a const on a cycle gets the cycle.
#[query(recover = const_cycle)]
pub fn const_value(cx: &Cx<'_>, key: &ConstKey) -> ConstValue {
    let map = cx.def_map(key.def.krate);
    let def = map.def(key.def);
    let item = match &def.kind {
        DefKind::Const(c) | DefKind::Static(c) => c.clone(),
        _ => return ConstValue::DependsOnError,
    };
    let (Some(ty), Some(expr)) = (item.ty, item.expr.as_ref()) else {
        return ConstValue::DependsOnError;
    };
    let ev = Evaluator {
        cx,
        map: &map,
        module: def.module,
    };
    match ev
        .eval(expr, Some(ty))
        .and_then(|v| ev.expect(v, ty, expr.pos()))
    {
        Ok(v) => ConstValue::Known(v),
        Err(Fail::Silent) => ConstValue::DependsOnError,
        Err(Fail::Error(e)) => ConstValue::Error(Arc::new(e)),
    }
}

/// [`const_value`]'s recovery: the canonical cycle itself.
fn const_cycle(_cx: &Cx<'_>, cycle: &Cycle, _key: &ConstKey) -> Option<ConstValue> {
    Some(ConstValue::Cycle(Arc::new(cycle.clone())))
}

/// The message of a const cycle.
pub fn cycle_message(cycle: &Cycle) -> String {
    let mut names: Vec<String> = cycle
        .frames
        .iter()
        .map(|f| format!("`{}`", f.key))
        .collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    format!(
        "cycle detected when evaluating constant {}",
        names.join(" -> ")
    )
}

enum Fail {
    Silent,
    Error(ConstError),
}

fn error(pos: Pos, message: impl Into<String>) -> Fail {
    Fail::Error(ConstError {
        pos,
        severity: Severity::Error,
        message: message.into(),
    })
}

fn unsupported(pos: Pos, message: impl Into<String>) -> Fail {
    Fail::Error(ConstError {
        pos,
        severity: Severity::Warning,
        message: message.into(),
    })
}

/// What a path in a const expression names.
enum Target {
    Value(Val),
    Const(ConstKey, IntTy),
}

struct Evaluator<'c, 'a> {
    cx: &'c Cx<'a>,
    map: &'c DefMap,
    module: u32,
}

impl Evaluator<'_, '_> {
    fn expect(&self, v: Val, ty: IntTy, pos: Pos) -> Result<Val, Fail> {
        if v.ty == ty {
            Ok(v)
        } else {
            Err(error(
                pos,
                format!(
                    "mismatched types: expected `{}`, found `{}`",
                    ty.name(),
                    v.ty.name()
                ),
            ))
        }
    }

    fn target(&self, path: &Path, pos: Pos) -> Result<Target, Fail> {
        let segs: Vec<&str> = path.segments.iter().map(|s| &**s).collect();
        let prim = match segs.as_slice() {
            [ty, name] => Some((*ty, *name)),
            ["std" | "core", ty, name] => Some((*ty, *name)),
            _ => None,
        };
        if let Some((ty, name)) = prim {
            if let Some(ty) = IntTy::from_name(ty) {
                return match name {
                    "MAX" => Ok(Target::Value(Val::wrap(ty, ty.max()))),
                    "MIN" => Ok(Target::Value(Val::wrap(ty, ty.min() as u128))),
                    "BITS" => Ok(Target::Value(Val::wrap(IntTy::U32, u128::from(ty.bits())))),
                    _ => Err(unsupported(
                        pos,
                        format!("unsupported associated item `{path}`"),
                    )),
                };
            }
        }
        match self.map.resolve_path(self.module, path, Ns::Values, false) {
            PathRes::Def(d) => {
                let def = self.map.def(d);
                match &def.kind {
                    DefKind::Const(c) | DefKind::Static(c) => match c.ty {
                        Some(ty) => Ok(Target::Const(
                            ConstKey {
                                def: d,
                                path: def.path.clone(),
                            },
                            ty,
                        )),
                        None => Err(unsupported(
                            pos,
                            format!("`{path}` is not a constant of a primitive integer type"),
                        )),
                    },
                    _ => Err(unsupported(pos, format!("`{path}` is not a constant"))),
                }
            }
            PathRes::External | PathRes::Primitive(_) => Err(unsupported(
                pos,
                format!("`{path}` is outside the analyzed crates"),
            )),
            PathRes::Unresolved => Err(unsupported(pos, format!("cannot find `{path}`"))),
        }
    }

    /// The type an expression has on its own, if any.
    fn ty_of(&self, e: &CExpr) -> Option<IntTy> {
        match e {
            CExpr::Int { suffix, .. } => *suffix,
            CExpr::Path(p, pos) => match self.target(p, *pos) {
                Ok(Target::Value(v)) => Some(v.ty),
                Ok(Target::Const(_, ty)) => Some(ty),
                Err(_) => None,
            },
            CExpr::Unary(_, e, _) => self.ty_of(e),
            CExpr::Binary(BinOp::Shl | BinOp::Shr, l, _, _) => self.ty_of(l),
            CExpr::Binary(_, l, r, _) => self.ty_of(l).or_else(|| self.ty_of(r)),
            CExpr::Cast(_, ty, _) => *ty,
            CExpr::Bool(..) | CExpr::Char(..) | CExpr::TooLarge(..) | CExpr::Unsupported(..) => {
                None
            }
        }
    }

    fn eval(&self, e: &CExpr, expected: Option<IntTy>) -> Result<Val, Fail> {
        match e {
            CExpr::Int { value, suffix, pos } => {
                let ty = suffix.or(expected).unwrap_or(IntTy::I32);
                Val::from_u128(ty, *value)
                    .ok_or_else(|| error(*pos, format!("literal out of range for `{}`", ty.name())))
            }
            CExpr::Bool(_, pos) | CExpr::Char(_, pos) => Err(unsupported(
                *pos,
                "unsupported expression: a `bool` or `char` outside a cast",
            )),
            CExpr::Path(p, pos) => match self.target(p, *pos)? {
                Target::Value(v) => Ok(v),
                Target::Const(key, _) => match self.cx.const_value(key) {
                    ConstValue::Known(v) => Ok(v),
                    _ => Err(Fail::Silent),
                },
            },
            CExpr::Unary(UnOp::Neg, inner, pos) => {
                let ty = self.ty_of(inner).or(expected).unwrap_or(IntTy::I32);
                if !ty.signed() {
                    return Err(error(
                        *pos,
                        format!("cannot apply unary operator `-` to type `{}`", ty.name()),
                    ));
                }
                if let CExpr::Int { value, .. } = &**inner {
                    // `-128i8`: the literal is negated before its range check.
                    let v = i128::try_from(*value).ok().map(|v| -v);
                    return v.and_then(|v| Val::from_i128(ty, v)).ok_or_else(|| {
                        error(*pos, format!("literal out of range for `{}`", ty.name()))
                    });
                }
                let v = self.eval(inner, Some(ty))?;
                v.signed()
                    .checked_neg()
                    .and_then(|n| Val::from_i128(ty, n))
                    .ok_or_else(|| error(*pos, "attempt to negate with overflow"))
            }
            CExpr::Unary(UnOp::Not, inner, _) => {
                let ty = self.ty_of(inner).or(expected);
                let v = self.eval(inner, ty)?;
                Ok(Val::wrap(v.ty, !v.raw))
            }
            CExpr::Binary(op, l, r, pos) => self.binary(*op, l, r, *pos, expected),
            CExpr::Cast(inner, ty, pos) => {
                let Some(ty) = ty else {
                    return Err(unsupported(
                        *pos,
                        "unsupported expression: cast to a non-integer type",
                    ));
                };
                match &**inner {
                    CExpr::Bool(b, _) => return Ok(Val::wrap(*ty, u128::from(*b))),
                    CExpr::Char(c, _) => return Ok(Val::wrap(*ty, u128::from(u32::from(*c)))),
                    _ => {}
                }
                let v = self.eval(inner, Some(self.ty_of(inner).unwrap_or(IntTy::I32)))?;
                Ok(Val::wrap(*ty, v.extended()))
            }
            CExpr::TooLarge(pos) => Err(error(*pos, "integer literal is too large")),
            CExpr::Unsupported(what, pos) => {
                Err(unsupported(*pos, format!("unsupported expression: {what}")))
            }
        }
    }

    fn binary(
        &self,
        op: BinOp,
        l: &CExpr,
        r: &CExpr,
        pos: Pos,
        expected: Option<IntTy>,
    ) -> Result<Val, Fail> {
        if matches!(op, BinOp::Shl | BinOp::Shr) {
            let ty = self.ty_of(l).or(expected).unwrap_or(IntTy::I32);
            let a = self.eval(l, Some(ty))?;
            let b = self.eval(r, Some(self.ty_of(r).unwrap_or(IntTy::I32)))?;
            let amount = b.signed();
            let (verb, left) = match op {
                BinOp::Shl => ("left", true),
                _ => ("right", false),
            };
            if amount < 0 || amount >= i128::from(ty.bits()) || (!b.ty.signed() && b.raw >= 128) {
                return Err(error(pos, format!("attempt to shift {verb} with overflow")));
            }
            let n = amount as u32;
            return Ok(if left {
                Val::wrap(ty, a.raw << n)
            } else if ty.signed() {
                Val::wrap(ty, (a.signed() >> n) as u128)
            } else {
                Val::wrap(ty, a.raw >> n)
            });
        }
        let ty = self
            .ty_of(l)
            .or_else(|| self.ty_of(r))
            .or(expected)
            .unwrap_or(IntTy::I32);
        let a = self.eval(l, Some(ty))?;
        let a = self.expect(a, ty, l.pos())?;
        let b = self.eval(r, Some(ty))?;
        let b = self.expect(b, ty, r.pos())?;
        let overflow = |what: &str| error(pos, format!("attempt to {what} with overflow"));
        match op {
            BinOp::BitAnd => return Ok(Val::wrap(ty, a.raw & b.raw)),
            BinOp::BitOr => return Ok(Val::wrap(ty, a.raw | b.raw)),
            BinOp::BitXor => return Ok(Val::wrap(ty, a.raw ^ b.raw)),
            BinOp::Div | BinOp::Rem if b.raw == 0 => {
                return Err(error(
                    pos,
                    if op == BinOp::Div {
                        "attempt to divide by zero"
                    } else {
                        "attempt to calculate the remainder with a divisor of zero"
                    },
                ))
            }
            _ => {}
        }
        let what = match op {
            BinOp::Add => "add",
            BinOp::Sub => "subtract",
            BinOp::Mul => "multiply",
            BinOp::Div => "divide",
            _ => "calculate the remainder",
        };
        if ty.signed() {
            let (x, y) = (a.signed(), b.signed());
            // `MIN % -1` is 0 in i128 arithmetic, but overflows in `ty`
            // (as `MIN / -1` does): rustc rejects both (E0080).
            // (`-x` itself overflows i128 for `i128::MIN`.)
            if op == BinOp::Rem
                && y == -1
                && x.checked_neg()
                    .and_then(|n| Val::from_i128(ty, n))
                    .is_none()
            {
                return Err(overflow(what));
            }
            let v = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => x.checked_div(y),
                _ => x.checked_rem(y),
            };
            v.and_then(|v| Val::from_i128(ty, v))
                .ok_or_else(|| overflow(what))
        } else {
            let (x, y) = (a.raw, b.raw);
            let v = match op {
                BinOp::Add => x.checked_add(y),
                BinOp::Sub => x.checked_sub(y),
                BinOp::Mul => x.checked_mul(y),
                BinOp::Div => x.checked_div(y),
                _ => x.checked_rem(y),
            };
            v.and_then(|v| Val::from_u128(ty, v))
                .ok_or_else(|| overflow(what))
        }
    }
}
