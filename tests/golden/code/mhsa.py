def forward(self, x, pad = None):
    check_input = attnspec_runtime_check_input(x, 'x', (('B', None), ('N', None), ('D', 64)));  x = None
    check_input_1 = attnspec_runtime_check_input(pad, 'pad', (('B', None), ('N', None)));  pad = None
    query_linear = self.query_linear(check_input)
    key_linear = self.key_linear(check_input)
    value_linear = self.value_linear(check_input);  check_input = None
    unflatten = query_linear.unflatten(-1, (8, 8));  query_linear = None
    transpose = unflatten.transpose(1, 2);  unflatten = None
    unflatten_1 = key_linear.unflatten(-1, (8, 8));  key_linear = None
    transpose_1 = unflatten_1.transpose(1, 2);  unflatten_1 = None
    unflatten_2 = value_linear.unflatten(-1, (8, 8));  value_linear = None
    transpose_2 = unflatten_2.transpose(1, 2);  unflatten_2 = None
    masked_sdpa = attnspec_runtime_masked_sdpa(transpose, transpose_1, transpose_2, check_input_1, causal = False, scale = 0.35355339059327373);  transpose = transpose_1 = transpose_2 = check_input_1 = None
    transpose_3 = masked_sdpa.transpose(1, 2);  masked_sdpa = None
    flatten = transpose_3.flatten(2);  transpose_3 = None
    output_linear = self.output_linear(flatten);  flatten = None
    return output_linear
