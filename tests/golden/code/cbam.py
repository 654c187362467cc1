def forward(self, x):
    check_input = attnspec_runtime_check_input(x, 'x', (('B', None), ('C', 64), ('H', None), ('W', None)));  x = None
    mean = torch.mean(check_input, dim = (2, 3))
    channel_gate_shared_mlp = self.channel_gate.shared_mlp(mean);  mean = None
    amax = torch.amax(check_input, dim = (2, 3))
    channel_gate_shared_mlp_1 = self.channel_gate.shared_mlp(amax);  amax = None
    add = channel_gate_shared_mlp + channel_gate_shared_mlp_1;  channel_gate_shared_mlp = channel_gate_shared_mlp_1 = None
    sigmoid = torch.sigmoid(add);  add = None
    getitem = sigmoid[(slice(None, None, None), slice(None, None, None), None, None)];  sigmoid = None
    mul = getitem * check_input;  getitem = check_input = None
    amax_1 = torch.amax(mul, dim = (1,))
    mean_1 = torch.mean(mul, dim = (1,))
    stack = torch.stack([amax_1, mean_1], dim = 1);  amax_1 = mean_1 = None
    spatial_gate_weight_conv = self.spatial_gate.weight_conv(stack);  stack = None
    spatial_gate_weight_batchnorm = self.spatial_gate.weight_batchnorm(spatial_gate_weight_conv);  spatial_gate_weight_conv = None
    sigmoid_1 = torch.sigmoid(spatial_gate_weight_batchnorm);  spatial_gate_weight_batchnorm = None
    mul_1 = sigmoid_1 * mul;  sigmoid_1 = mul = None
    return mul_1
