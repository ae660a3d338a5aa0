/*
 * fastnll/_pack_T.h -- copying a strided block of a column traversal into unit-stride class
 * rows (pack) and back (unpack), so that the column helpers of _generic_loops_T.h take their
 * vector loops.  No include guard: _loops.h includes this file twice, for T float and T
 * double, like _generic_loops_T.h.
 *
 * The block: nclass class rows (stride s_class) of ncols columns (stride s_col) at x; the
 * packed copy: class row j at packed + j * s_packed, columns contiguous.
 */

/* packed[j s_packed + k] = x[j s_class + k s_col] for j < nclass, k < ncols.
 * With transpose tiles (_transpose_tiles.h; rows of contiguous classes, s_class == 1, rows at
 * least a tile apart), whole L x L tiles are transposed in registers.  tail_ok says that the
 * rows after these ncols exist: a last, partial tile of classes may then read up to L - 1
 * elements past a row's nclass classes (inside the next row's span) and store up to L - 1
 * unused class rows, so `packed` must have room for nclass rounded up to a multiple of L
 * rows.  When the rows are dense (s_class == 1, s_col < 2 nclass) and more follow, the next
 * ncols rows (the caller's next block) are prefetched first, so that the block's exp passes
 * overlap their fetch from memory. */
FNL_INLINE void FNL_FN(fnl_pack)(const T *x, ptrdiff_t nclass, ptrdiff_t s_class,
                                 ptrdiff_t ncols, ptrdiff_t s_col, T *packed,
                                 ptrdiff_t s_packed, int tail_ok)
{
    ptrdiff_t jt = 0, kt = 0;   /* the tiles cover classes [0, jt) of columns [0, kt) */
    if (tail_ok && s_class == 1 && s_col < 2 * nclass) {   /* dense rows */
        /* addresses as integers: the next block may end before these ncols rows do */
        uintptr_t p = (uintptr_t)x + (uintptr_t)(ncols * s_col) * sizeof(T);
        uintptr_t e = p + (uintptr_t)(ncols * s_col) * sizeof(T);
        for (; p < e; p += 64) FNL_PREFETCH((const void *)p);
    }
#ifdef FNL_HAVE_TILE
    if (s_class == 1 && s_col >= FNL_T_TILE) {
        kt = ncols - ncols % FNL_T_TILE;
        jt = tail_ok ? nclass : nclass - nclass % FNL_T_TILE;
        for (ptrdiff_t k0 = 0; k0 < kt; k0 += FNL_T_TILE)
            for (ptrdiff_t j0 = 0; j0 < jt; j0 += FNL_T_TILE)
                FNL_FN(fnl_tile)(x + k0 * s_col + j0, s_col, packed + j0 * s_packed + k0,
                                 s_packed);
    }
#endif
    for (ptrdiff_t k = 0; k < ncols; k++)
        for (ptrdiff_t j = k < kt ? jt : 0; j < nclass; j++)
            packed[j * s_packed + k] = x[j * s_class + k * s_col];
}

/* y[j s_class + k s_col] = packed[j s_packed + k]: the reverse, into an output block */
FNL_INLINE void FNL_FN(fnl_unpack)(const T *packed, ptrdiff_t s_packed, ptrdiff_t nclass,
                                   ptrdiff_t ncols, T *y, ptrdiff_t s_class, ptrdiff_t s_col)
{
    for (ptrdiff_t k = 0; k < ncols; k++)
        for (ptrdiff_t j = 0; j < nclass; j++)
            y[j * s_class + k * s_col] = packed[j * s_packed + k];
}
